"""Map ALLOWED_ORIGINS onto Chainlit's CORS settings, for the embeddable widget.

`.chainlit/config.toml` is static, but the allowed origins are deployment configuration. Chainlit
adds its `CORSMiddleware` when `chainlit.server` is imported, before the app module loads, with
`config.project.allow_origins` as the list: we change that list in place, the middleware's own
arguments, and drop an already built middleware stack so Starlette rebuilds it.

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

SOCKET_PATH = "/ws/socket.io"  # chainlit.server.SOCKET_IO_PATH, after any root path


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
    if app is None or sio is None or config is None:
        from chainlit.config import config as cl_config
        from chainlit.server import app as cl_app
        from chainlit.server import sio as cl_sio

        app, sio, config = app or cl_app, sio or cl_sio, config or cl_config
    wanted = [o.strip().rstrip("/") if o.strip() != "*" else "*" for o in origins if o.strip()] or ["*"]
    current = config.project.allow_origins
    current[:] = wanted  # the same list object the middleware was given
    from starlette.middleware.cors import CORSMiddleware

    for middleware in getattr(app, "user_middleware", []):
        if middleware.cls is CORSMiddleware:
            middleware.kwargs["allow_origins"] = current
    if getattr(app, "middleware_stack", None) is not None:
        app.middleware_stack = None  # rebuilt with the new list on the next request
    eio = getattr(sio, "eio", None)
    if eio is not None:
        eio.cors_allowed_origins = []  # no engine.io CORS headers or checks: the middleware and guard do both
    guard = next((m for m in getattr(app, "user_middleware", []) if m.cls is SocketOriginGuard), None)
    if guard is None:
        app.add_middleware(SocketOriginGuard, origins=SocketOrigins())
        guard = app.user_middleware[0]
    guard.kwargs["origins"].check = None if "*" in wanted else origin_checker(wanted)
    return wanted
