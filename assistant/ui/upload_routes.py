"""Chainlit's upload, set from our settings and guarded before a byte is kept.

`.chainlit/config.toml` declares the accepted types (MIME types with their extensions); the
limits and whether uploads are on at all are deployment settings (UPLOAD_MAX_MB, UPLOAD_MAX_FILES,
ALLOW_UPLOADS, ASSISTANT_ADMINS), so `apply_upload_settings` copies them into Chainlit's config at
start-up, as `cors.apply_allowed_origins` does for origins. Chainlit then enforces them in the
browser (the file picker's `accept`, count and size) and in `POST /project/file`.

That route alone is not enough on a 512 MB host: it reads the whole body into memory before it
checks the size, answers an empty file with a 500, and lets anyone with a session upload. So:

- `UploadSizeGuard` (ASGI middleware) refuses a too-large upload by its Content-Length, 413,
  before the body is read;
- our own `POST /project/file`, ahead of Chainlit's, refuses (one-line JSON `detail`, which the
  chat shows) people who may not add documents, empty files and unsupported types, then hands
  the rest to Chainlit's handler;
- our own `GET /project/settings`, ahead of Chainlit's, turns the upload button off for people
  who may not use it (with ASSISTANT_ADMINS, only admins see it).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import HTTPException, Query, UploadFile
from starlette.responses import JSONResponse

from assistant.config import Settings
from assistant.ui.uploads import UploadRefused, may_manage, refusal, safe_upload_name, uploads_possible
from assistant.upstream_compat import (
    add_middleware,
    add_route_first,
    chainlit_project_settings,
    chainlit_upload_file,
    current_user_dependency,
    set_spontaneous_upload,
)

UPLOAD_PATH = "/project/file"
SETTINGS_PATH = "/project/settings"
MULTIPART_SLACK = 64 * 1024  # form boundary and headers around the file
_settings: dict[str, Settings] = {}  # the deployment's settings, for the routes below


def apply_upload_settings(settings: Settings, config: Any = None) -> None:
    """Make Chainlit's spontaneous upload follow our settings (on/off, count and size limits)."""
    set_spontaneous_upload(uploads_possible(settings), settings.upload_max_files, settings.upload_max_mb, config)
    _settings["current"] = settings


def _current() -> Settings:
    return _settings["current"]


class UploadSizeGuard:
    """ASGI middleware: refuse an upload whose declared size is over the limit, before reading it."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("method") == "POST" and scope.get("path", "").endswith(UPLOAD_PATH) \
                and "current" in _settings:
            settings = _current()
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
            length = headers.get("content-length", "")
            limit = settings.upload_max_mb * 1024 * 1024 + MULTIPART_SLACK
            if not length.isdigit():
                await JSONResponse({"detail": "Upload refused: the request did not say its size"},
                                   status_code=411)(scope, receive, send)
                return
            if int(length) > limit:
                mb = int(length) / 1048576
                await JSONResponse({"detail": f"The file is {mb:.1f} MB; the limit is {settings.upload_max_mb} MB"
                                              " per file"}, status_code=413)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _user_dependency() -> Any:
    return current_user_dependency()


async def upload_file(session_id: str, file: UploadFile, ask_parent_id: str | None = None,
                      current_user: Any = _user_dependency()) -> Any:
    """Chainlit's upload route, with our checks first (one-line `detail`s the chat shows)."""
    settings = _current()
    if ask_parent_id is None:  # a file the person attaches to a message, to be indexed
        name = getattr(current_user, "identifier", None)
        if not may_manage(settings, name):
            await file.close()
            raise HTTPException(status_code=403, detail=refusal(settings))
        try:
            safe = safe_upload_name(file.filename or "")
        except UploadRefused as err:
            await file.close()
            raise HTTPException(status_code=400, detail=str(err)) from None
        if not file.size:
            await file.close()
            raise HTTPException(status_code=400, detail=f"{safe} is empty: there is nothing to index")
    return await chainlit_upload_file(current_user=current_user, session_id=session_id, file=file,
                                      ask_parent_id=ask_parent_id)


async def project_settings(language: str = Query(default="en-US"), chat_profile: str | None = Query(default=None),
                           current_user: Any = _user_dependency()) -> Any:
    """Chainlit's project settings, with the upload button only for people who may upload."""
    response = await chainlit_project_settings(current_user=current_user, language=language, chat_profile=chat_profile)
    if may_manage(_current(), getattr(current_user, "identifier", None)):
        return response
    body = json.loads(bytes(response.body))
    upload = (body.get("features") or {}).get("spontaneous_file_upload")
    if isinstance(upload, dict):
        upload["enabled"] = False
    return JSONResponse(content=body, status_code=response.status_code)


def install_upload_routes(app: Any, settings: Settings, config: Any = None) -> None:
    """Settings into Chainlit's config, the size guard, and the two guarded routes."""
    apply_upload_settings(settings, config)
    add_middleware(app, UploadSizeGuard)
    add_route_first(app, UPLOAD_PATH, upload_file, "POST")  # ahead of Chainlit's own route of the same path
    add_route_first(app, SETTINGS_PATH, project_settings, "GET")
