"""Map ALLOWED_ORIGINS onto Chainlit's CORS settings, for the embeddable widget.

`.chainlit/config.toml` is static, but the allowed origins are deployment configuration. Chainlit
adds its `CORSMiddleware` when `chainlit.server` is imported, before the app module loads, with
`config.project.allow_origins` as the list: we change that list in place, the middleware's own
arguments, and drop an already built middleware stack so Starlette rebuilds it. WebSockets are not
covered by CORS, so with a restricted list the Socket.IO server also checks the `Origin` header
(the app's own origin always passes, or the full-page chat would lock itself out).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit


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
        eio.cors_allowed_origins = [] if "*" in wanted else origin_checker(wanted)
    return wanted
