"""Doc Assistant's Chainlit app: the handlers, and `install()`, the one call that wires the server.

`import assistant.app` only defines them. `install(settings)` registers the handlers with Chainlit
and adds this product's settings, CORS, routes, login and data layer to Chainlit's server. Chainlit
runs the app with `chainlit run assistant/app.py`, which executes this file *by path* (as a module
named after the path, not `assistant.app`): then the last lines of this file call `install()` with
the settings from the environment. Tests call `install(their_settings, runtime=...)`, or drive a
`ChatApp(runtime)` directly. Everything with logic lives in modules tests reach without a browser:
`assistant.ui.*` (the turn, sources, starters, settings, runtime, CORS, the data layer),
`assistant.health`, and `assistant.upstream_compat` (every reach into Chainlit's internals).

Start-up cost: on Render's free tier (0.1 CPU) each CPU second spent before the port opens is ten
seconds of a visitor's wait, and `import chainlit` alone costs about two. So this module imports
only what the server needs to open its port; the database driver, the data layer, the chat turn
and the answer pipeline (with `openai` and `tiktoken` when an LLM is configured) are imported by
the background warm-up once the port accepts connections (see `assistant.ui.runtime`), or by the
first handler that needs them.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

try:
    import assistant  # noqa: F401  (loaded by path, this file cannot count on its own package)
except ModuleNotFoundError:  # the `chainlit` script in a checkout: the repository root is not importable
    raise SystemExit("Cannot import the `assistant` package: run `pip install .` in the checkout, or start the chat"
                     " from its root with `python -m chainlit run assistant/app.py` (or `python -m assistant serve`)"
                     ) from None

import chainlit as cl

from assistant.ui import documents, upload_chat

if TYPE_CHECKING:
    from assistant.config import Settings
    from assistant.retrieval.database import Connections
    from assistant.ui.datalayer import ChatDataLayer
    from assistant.ui.runtime import Runtime


def _turn() -> ModuleType:
    """The chat turn's building blocks (imported by the warm-up, or here on first use)."""
    from assistant.ui import turn

    return turn


def _chat_tables(database: Connections) -> None:
    """Create or migrate the chat's tables once the database is open."""
    from assistant.ui.datalayer import ensure_chat_schema

    ensure_chat_schema(database)


class ChatApp:
    """Chainlit's handlers over one Runtime: the process's database, retriever and answer pipeline."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def data_layer(self) -> ChatDataLayer:
        """Our own persistence (threads, feedback) on the shared pool, not Chainlit's asyncpg layer."""
        from assistant.ui.datalayer import ChatDataLayer

        return ChatDataLayer(self.runtime.database)

    def warm_up(self) -> None:
        """Open the database and load the embedder in the background once the port accepts connections."""
        from assistant.upstream_compat import listening_address

        self.runtime.start_warmup(listening=listening_address())

    def shut_down(self) -> None:
        """Release the embedded database (Chainlit may exit without running atexit handlers)."""
        from assistant.retrieval.database import stop_embedded

        stop_embedded()

    async def starters(self, user: cl.User | None = None, language: str | None = None) -> list[cl.Starter]:
        """Starter questions drawn from the indexed documents' titles and sections."""
        return [cl.Starter(label=s.label, message=s.message) for s in await self.runtime.astarters()]

    async def chat_start(self) -> None:
        """Offer the per-session search settings and the /documents command."""
        await _turn().start_session(self.runtime)
        await documents.offer_commands()

    async def settings_update(self, values: dict) -> None:
        """Validate changed settings (they apply to this session's next questions)."""
        await _turn().settings_changed(values, self.runtime)

    async def on_message(self, message: cl.Message) -> None:
        """`/documents`; or index attached files, then answer the text (from those files when any)."""
        listing = documents.command_text(message)
        if listing is not None:
            await documents.show_list(self.runtime, listing)
            return
        if not upload_chat.attached_files(message):
            await _turn().answer(self.runtime, message)
            return
        added = await upload_chat.add_files(self.runtime, message)
        if added and (message.content or "").strip():
            await _turn().answer(self.runtime, message, documents=added)

    async def documents_more(self, action: cl.Action) -> None:
        """The document list's "Show more"."""
        await documents.more(self.runtime, action)

    async def document_remove_ask(self, action: cl.Action) -> None:
        """A document's "Remove" button: asks for a confirmation."""
        await documents.ask_remove(self.runtime, action)

    async def document_remove(self, action: cl.Action) -> None:
        """The confirmation: remove the document (admins only)."""
        await documents.remove(self.runtime, action)

    async def document_keep(self, action: cl.Action) -> None:
        """The confirmation's "Keep it"."""
        await documents.keep(self.runtime, action)

    def chat_end(self) -> None:
        """Free the session's message list (upstream leak #2951)."""
        _turn().end_session()


def install(settings: Settings | None = None, *, runtime: Runtime | None = None, server: Any = None) -> ChatApp:
    """Wire Chainlit's server for `settings` (default: the environment): the one place the app acts.

    Registers the handlers and our data layer with Chainlit, and adds to its FastAPI app (`server`,
    Chainlit's own by default): CORS from ALLOWED_ORIGINS, the upload routes and limits, GET
    /documents/{id}, the watermark, GET /healthz, the password login, the per-user scope of the
    data layer, the offline page. Calling it again re-wires with the new settings (tests do).
    """
    from assistant.config import Settings
    from assistant.health import HealthChecker, install_healthz
    from assistant.originals import Originals, install_originals
    from assistant.ui.ci_mode import restore_openai_key
    from assistant.ui.cors import apply_allowed_origins
    from assistant.ui.login import enable_password_login
    from assistant.ui.page import install_offline_page
    from assistant.ui.runtime import Runtime
    from assistant.ui.upload_routes import install_upload_routes
    from assistant.ui.user_scope import install_user_scope
    from assistant.ui.watermark import install_watermark

    if server is None:
        from chainlit.server import app as server
    if settings is None:
        restore_openai_key()  # `CI` in the environment made `chainlit run` replace it with a fake key
        settings = Settings.from_env()
    runtime = runtime or Runtime(settings)  # one database pool, Retriever and ChatPipeline per process
    runtime.on_database(_chat_tables)
    chat = ChatApp(runtime)

    apply_allowed_origins(settings.allowed_origins, app=server)  # ALLOWED_ORIGINS -> CORS of the running server
    install_upload_routes(server, settings)  # upload limits and who may upload (UPLOAD_*, ASSISTANT_ADMINS)
    install_originals(server, Originals(runtime))  # GET /documents/{id}: a cited file's original
    install_watermark(server, settings.llm_enabled)  # no "LLMs can make mistakes" without an LLM
    install_healthz(server, HealthChecker(runtime))
    enable_password_login(settings, app=server)  # ASSISTANT_USERS set: Chainlit's login form; else an open chat
    install_user_scope(server)  # history and ratings are read and changed only by their owner
    install_offline_page(server)  # the page asks no third party for anything (KaTeX, fonts), og tags

    cl.data_layer(chat.data_layer)
    cl.on_app_startup(chat.warm_up)
    cl.on_app_shutdown(chat.shut_down)
    cl.set_starters(chat.starters)
    cl.on_chat_start(chat.chat_start)
    cl.on_settings_update(chat.settings_update)
    cl.on_message(chat.on_message)
    cl.action_callback(documents.ACT_LIST)(chat.documents_more)
    cl.action_callback(documents.ACT_ASK)(chat.document_remove_ask)
    cl.action_callback(documents.ACT_REMOVE)(chat.document_remove)
    cl.action_callback(documents.ACT_KEEP)(chat.document_keep)
    cl.on_chat_end(chat.chat_end)
    return chat


# `chainlit run assistant/app.py` executes this file by path: that process is the server, so it
# wires itself here. `import assistant.app` (tests, tools) does not get here with this name.
if __name__ != "assistant.app":
    install()
