"""Map ALLOWED_ORIGINS onto Chainlit's CORS settings, for the embeddable widget.

`.chainlit/config.toml` is static, but the allowed origins are deployment configuration. Chainlit
adds its `CORSMiddleware` when `chainlit.server` is imported, before the app module loads:
`upstream_compat.set_cors_origins` changes its list in place (see there for how and why).

WebSockets are not covered by CORS, so with a restricted list the Socket.IO endpoint also checks
the `Origin` header itself (the app's own origin always passes, or the full-page chat would lock
itself out). That check is `SocketOriginGuard`, in front of the whole app, and not engine.io's own
`cors_allowed_origins`: engine.io would then add its own `Access-Control-Allow-Origin` to polling
responses on top of the CORS middleware's, and browsers refuse a doubled header, so the widget
could never connect from an allowed site.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from assistant.upstream_compat import SOCKET_IO_PATH as SOCKET_PATH
from assistant.upstream_compat import add_middleware, installed_middleware, set_cors_origins


def _netloc(url: str) -> str:
    try:
        return urlsplit(url).netloc.lower()
    except ValueError:
        return ""


def origin_checker(origins: Sequence[str]) -> Any:
    """A python-engineio `cors_allowed_origins` callable: listed origins, plus same-origin requests."""
    allowed = {o.rstrip("/").lower() for o in origins}

    def check(origin: str | None, environ: dict[str, Any] | None = None) -> bool:
        if not origin:
            return True
        if origin.rstrip("/").lower() in allowed:
            return True
        env = environ or {}
        forwarded = str(env.get("HTTP_X_FORWARDED_HOST", "")).split(",")[0]
        hosts = {str(env.get("HTTP_HOST", "")).strip().lower(), forwarded.strip().lower()}
        return _netloc(origin) in (hosts - {""})

    return check


class SocketOrigins:
    """The Socket.IO origin check in force (None: every origin), shared with the guard."""

    def __init__(self) -> None:
        self.check: Callable[[str | None, dict[str, Any]], bool] | None = None


class SocketOriginGuard:
    """ASGI middleware: refuse Socket.IO requests (polling and WebSocket) from origins not allowed."""

    def __init__(self, app: Any, origins: SocketOrigins) -> None:
        self.app = app
        self.origins = origins

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        check = self.origins.check
        if check is not None and scope["type"] in ("http", "websocket") and SOCKET_PATH in scope.get("path", ""):
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
            origin = headers.get("origin")
            environ = {"HTTP_HOST": headers.get("host", ""),
                       "HTTP_X_FORWARDED_HOST": headers.get("x-forwarded-host", "")}
            if not check(origin, environ):
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1008})  # before accept: HTTP 403
                    return
                from starlette.responses import PlainTextResponse

                await PlainTextResponse(f"{origin} is not an accepted origin.", status_code=400)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def apply_allowed_origins(origins: Sequence[str], *, app: Any = None, sio: Any = None, config: Any = None) -> list[str]:
    """Make `origins` (ALLOWED_ORIGINS) the CORS allow-list of the running Chainlit server."""
    if app is None:
        from chainlit.server import app
    wanted = [o.strip().rstrip("/") if o.strip() != "*" else "*" for o in origins if o.strip()] or ["*"]
    set_cors_origins(wanted, app=app, sio=sio, config=config)
    guard = installed_middleware(app, SocketOriginGuard) or add_middleware(app, SocketOriginGuard,
                                                                           origins=SocketOrigins())
    guard.kwargs["origins"].check = None if "*" in wanted else origin_checker(wanted)
    return wanted
