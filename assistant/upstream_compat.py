"""Every reach into Chainlit's and tiktoken's internals, in one module, pinned to the versions it fits.

The product relies on a few things upstream does not offer as API: where a route sits in Chainlit's
router, the arguments of middleware Chainlit already added, engine.io's CORS switch, Chainlit's
`get_current_user` dependency and route functions, its per-session message lists, the markup of its
page and the DOM ids of its side panel, what its CI mode does to `OPENAI_API_KEY`, and tiktoken's
file reader. Each is here, with why and the upstream issue; the feature modules (`ui/cors.py`,
`ui/page.py`, `ui/upload_routes.py`, `health.py`...) call these functions and touch nothing upstream
themselves. `tests/test_upstream_compat.py` fails when the installed Chainlit or tiktoken is not the
version below: read docs/UPGRADING-CHAINLIT.md, re-check each entry, then move the pin.

Named `upstream_compat` (not `ui/chainlit_compat`) because it holds tiktoken's patch too, which the
chat layer uses without Chainlit: it sits beside `config.py` so no arrow runs up from `chat/` to
`ui/`. Nothing here imports chainlit, fastapi, starlette or tiktoken at module level: the app
imports this before its port opens, and at 0.1 CPU each import there is ten times its cost.
"""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

# The versions every entry below was checked against (requirements.txt pins the same).
PINNED = {"chainlit": "2.12.0", "tiktoken": "0.14.0"}
UPGRADE_GUIDE = "docs/UPGRADING-CHAINLIT.md"


def version_mismatches(installed: Callable[[str], str] = importlib.metadata.version) -> list[str]:
    """One line per pinned package whose installed version differs (empty when all match)."""
    found = []
    for package, pinned in PINNED.items():
        try:
            version = installed(package)
        except importlib.metadata.PackageNotFoundError:
            version = "none"
        if version != pinned:
            found.append(f"patches were written for {package} {pinned}, installed {version}: read {UPGRADE_GUIDE}")
    return found


# -- 1. routes ahead of Chainlit's catch-all ------------------------------------------------------


def add_route_first(app: Any, path: str, endpoint: Callable[..., Any], method: str = "GET") -> None:
    """Serve `method path` with `endpoint`, ahead of Chainlit's own routes (replacing an earlier copy).

    Why: Chainlit registers `GET /{full_path:path}` (the page) before the app module loads, so a route
    added afterwards is never reached; routes we wrap (`POST /project/file`, `GET /project/settings`,
    `GET /project/translations`) must also come before Chainlit's own. Upstream: Chainlit #1819
    ("Custom FastAPI routes no longer work"), #705 (allow overriding the integrated frontend).
    Reaches into: `app.router.routes` order (FastAPI 0.165 keeps a plain list there).
    """
    routes = app.router.routes
    routes[:] = [r for r in routes if not _same_route_of_ours(r, path, method)]
    app.add_api_route(path, endpoint, methods=[method], include_in_schema=False)
    routes.insert(0, routes.pop())


def _same_route_of_ours(route: Any, path: str, method: str) -> bool:
    """An earlier copy of a route this product added (a re-install replaces it, never stacks two)."""
    module = str(getattr(getattr(route, "endpoint", None), "__module__", ""))
    return (getattr(route, "path", None) == path and method in (getattr(route, "methods", None) or ())
            and module.startswith("assistant."))


# -- 2. middleware on Chainlit's already built app ------------------------------------------------


def installed_middleware(app: Any, cls: type) -> Any:
    """The `Middleware` entry of `cls` on `app` (its `kwargs` can be changed in place), or None."""
    return next((m for m in getattr(app, "user_middleware", []) if m.cls is cls), None)


def add_middleware(app: Any, cls: type, *, innermost: bool = False, **options: Any) -> Any:
    """Add `cls(**options)` to `app` once (later calls update its options); returns its entry.

    Why: Chainlit's app is built when `chainlit.server` is imported, before our code runs, and
    Starlette builds its middleware stack once, on the first request (tests and re-installs may
    come after one): dropping `app.middleware_stack` makes Starlette rebuild it with ours.
    `innermost` puts it next to the routes, inside Chainlit's GZip (to see HTML before it is
    compressed). No upstream issue; reason: Starlette refuses `add_middleware` after start-up by
    design, and Chainlit offers no hook before its app is built.
    """
    rebuild_middleware(app)  # Starlette refuses add_middleware once a stack is built
    entry = installed_middleware(app, cls)
    if entry is None:
        if innermost:
            from starlette.middleware import Middleware

            entry = Middleware(cls, **options)
            app.user_middleware.append(entry)
        else:
            app.add_middleware(cls, **options)
            entry = app.user_middleware[0]
    else:
        entry.kwargs.update(options)
    return entry


def rebuild_middleware(app: Any) -> None:
    """Make Starlette build `app`'s middleware stack again on the next request."""
    if getattr(app, "middleware_stack", None) is not None:
        app.middleware_stack = None


# -- 3. CORS: Chainlit's CORSMiddleware and engine.io ---------------------------------------------

SOCKET_IO_PATH = "/ws/socket.io"  # chainlit.server.SOCKET_IO_PATH, after any root path


def set_cors_origins(origins: list[str], *, app: Any = None, sio: Any = None, config: Any = None) -> None:
    """Make `origins` the allow-list of Chainlit's CORS middleware; turn engine.io's own CORS off.

    Why: `.chainlit/config.toml` `allow_origins` is static and read when `chainlit.server` is
    imported, which builds `CORSMiddleware(allow_origins=config.project.allow_origins)`; a
    deployment's origins come from ALLOWED_ORIGINS. The config list is changed in place (the object
    the middleware holds) and the middleware's own kwargs too. engine.io would add its own
    `Access-Control-Allow-Origin` to polling answers on top of the middleware's, and browsers refuse
    a doubled header, so its list is emptied (`ui.cors.SocketOriginGuard` checks socket origins).
    Upstream: Chainlit #2210 (allow_origins vs copilot), #1540 (CORS on the Socket.IO server),
    python-engineio #261 (duplicate CORS headers with Starlette's CORSMiddleware).
    """
    if app is None or sio is None or config is None:
        from chainlit.config import config as cl_config
        from chainlit.server import app as cl_app
        from chainlit.server import sio as cl_sio

        app, sio, config = app or cl_app, sio or cl_sio, config or cl_config
    from starlette.middleware.cors import CORSMiddleware

    current = config.project.allow_origins
    current[:] = origins
    entry = installed_middleware(app, CORSMiddleware)
    if entry is not None:
        entry.kwargs["allow_origins"] = current
    eio = getattr(sio, "eio", None)
    if eio is not None:
        eio.cors_allowed_origins = []
    rebuild_middleware(app)


# -- 4. the signed-in user, on requests and in routes we wrap --------------------------------------


def on_signed_in_request(app: Any, record: Callable[[str], None]) -> None:
    """Call `record(identifier)` for the user Chainlit authenticates on each HTTP request.

    Why: Chainlit's routes take the user from its `get_current_user` dependency but pass it to
    neither the data layer nor `/feedback`'s checks; overriding that dependency (FastAPI runs an
    async dependency in the route's own task) scopes every data layer call of the request. No
    upstream issue; reason: the data layer API has no user argument (Chainlit PR #2647 fixed the
    socket's thread-author check, not the HTTP routes').
    """
    from chainlit.auth import get_current_user, reuseable_oauth
    from fastapi import Depends

    async def current_user(token: str | None = Depends(reuseable_oauth)) -> Any:
        user = await get_current_user(token)  # type: ignore[arg-type]
        if user is not None:
            record(user.identifier)
        return user

    app.dependency_overrides[get_current_user] = current_user


def current_user_dependency() -> Any:
    """`Depends(chainlit.auth.get_current_user)`, for routes that replace Chainlit's own."""
    from chainlit.auth import get_current_user
    from fastapi import Depends

    return Depends(get_current_user)


async def request_is_signed_in(request: Any) -> bool:
    """Chainlit's rule for a request: no login configured, or a valid session cookie / bearer token."""
    from chainlit.auth import get_current_user, require_login, reuseable_oauth
    from fastapi import HTTPException

    if not require_login():
        return True
    try:
        token = await reuseable_oauth(request)
        return await get_current_user(token) is not None  # type: ignore[arg-type]
    except HTTPException:
        return False


async def chainlit_upload_file(**route_args: Any) -> Any:
    """Chainlit's `POST /project/file` handler (current_user, session_id, file, ask_parent_id).

    Why: our guarded route checks who uploads what first, then hands over. No upstream issue;
    reason: the route reads the whole body before its size check and answers an empty file with a
    500, which a 512 MB host cannot leave as is.
    """
    from chainlit.server import upload_file

    return await upload_file(**route_args)


async def chainlit_project_settings(**route_args: Any) -> Any:
    """Chainlit's `GET /project/settings` handler (current_user, language, chat_profile); we turn
    the upload button off for people who may not upload. No upstream issue; reason: Chainlit's
    upload switch is global, not per user."""
    from chainlit.server import project_settings

    return await project_settings(**route_args)


# -- 5. Chainlit's configuration, changed at start-up ---------------------------------------------


def set_spontaneous_upload(enabled: bool, max_files: int, max_size_mb: int, config: Any = None) -> None:
    """Chainlit's attach button: on/off and limits from our settings (UPLOAD_*, ALLOW_UPLOADS).
    No upstream issue; reason: config.toml is static, these are deployment settings."""
    if config is None:
        from chainlit.config import config
    from chainlit.config import SpontaneousFileUploadFeature

    feature = config.features.spontaneous_file_upload
    if feature is None:
        feature = config.features.spontaneous_file_upload = SpontaneousFileUploadFeature()
    feature.enabled, feature.max_files, feature.max_size_mb = enabled, max_files, max_size_mb


def translation(language: str) -> tuple[str, dict[str, Any]]:
    """(effective language, Chainlit's translation dict), as `GET /project/translations` serves it.
    Used to replace the "LLMs can make mistakes" watermark without an LLM; no upstream issue;
    reason: the watermark is one translation string with no switch."""
    from chainlit.config import config

    effective = config.ui.language or language
    return effective, config.load_translation(effective)


def ui_setting(name: str) -> Any:
    """`[UI] <name>` of .chainlit/config.toml (None when unset)."""
    from chainlit.config import config

    return getattr(config.ui, name, None)


def listening_address() -> tuple[str, int]:
    """Where `chainlit run` binds (set from --host/--port before the app module loads)."""
    from chainlit.config import config

    return config.run.host, config.run.port


# -- 6. per-session message lists (memory leak) ---------------------------------------------------


def forget_chat_context(session_id: str) -> None:
    """Drop a finished session's message list from `chainlit.chat_context.chat_contexts`.

    Why: Chainlit fills that module-level dict per session and never removes an entry, so memory
    grows with every chat until a 512 MB host is killed. Upstream: Chainlit #2951.
    """
    from chainlit.chat_context import chat_contexts

    chat_contexts.pop(session_id, None)


# -- 7. the page Chainlit serves ------------------------------------------------------------------
# `chainlit.server.get_html_template()` markup rewritten by `ui/page.py` (no third-party requests,
# og tags of this deployment). If these stop matching, test_browser_offline fails. No upstream
# issue for Chainlit; reason: KaTeX's CDN link and the Google Fonts preconnects are hard-coded in
# its index.html (huggingface/chat-ui #1625 is the same problem in another UI).
PAGE_KATEX_LINK = re.compile(r'href="https://cdn\.jsdelivr\.net/npm/katex@[^"]*/katex(?:\.min)?\.css"')
PAGE_PRECONNECT = re.compile(r'\s*<link\s+rel="(?:preconnect|dns-prefetch)"\s+href="https?://[^"]*"[^>]*>')
PAGE_OG_TAG = re.compile(r'(<meta property="og:(url|image)" content=")([^"]*)(">)')

# DOM hooks public/doc-assistant.js relies on (the side panel must open only on a citation click:
# Chainlit #2932 and #2979, fixed by PR #2982 after 2.12.0). tests/test_browser_app.py checks each.
DOM_HOOKS = {
    "citation_link": "a.element-link",  # a citation chip in an answer
    "side_panel_title": "#side-view-title",  # the open side panel's title (its button closes it)
    "side_panel_content": "#side-view-content",
}

# -- 8. Chainlit's CI mode ------------------------------------------------------------------------
# `chainlit run --ci` (also taken from a `CI` environment variable) sets OPENAI_API_KEY to this
# before the app loads; `ui/ci_mode.py` puts the real key back. No upstream issue; reason: the
# mock dates from Chainlit's own e2e tests (PR #42) and is documented nowhere.
CHAINLIT_CI_KEY = "sk-FAKE-OPENAI-API-KEY"


# -- 9. tiktoken: never download ------------------------------------------------------------------


class DownloadRefused(RuntimeError):
    """tiktoken tried to fetch a BPE file from the network."""


@contextmanager
def tiktoken_local_files_only() -> Iterator[None]:
    """While inside, tiktoken builds encodings from local files only (cache, bundled plugins).

    Why: `tiktoken.get_encoding` downloads a missing BPE file, which offline hangs on DNS or fails
    late, and is a surprise cold-start cost on a small host. tiktoken reads remote files through
    `tiktoken.load.read_file` after looking in its cache, so refusing URLs there stops downloads
    only. Not thread-safe: callers hold their own lock (`chat.llm_tokens`). Upstream: tiktoken #513
    (TIKTOKEN_OFFLINE ignored; PR #527 unreleased in 0.14.0), #317 (an offline mode).
    """
    import tiktoken.load as tl

    original = tl.read_file

    def local_only(blobpath: str) -> bytes:
        if "://" in blobpath:
            raise DownloadRefused(f"not downloading {blobpath}")
        return original(blobpath)

    tl.read_file = local_only
    try:
        yield
    finally:
        tl.read_file = original

