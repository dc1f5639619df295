"""Doc Assistant's Chainlit app: handlers only, thin glue between the UI and chat/ + retrieval/.

Run with `chainlit run assistant/app.py` from the repository root (or `python -m assistant serve`).
Everything with logic lives in modules tests reach without a browser: `assistant.ui.*` (the turn,
sources, starters, settings, runtime, CORS), `assistant.datalayer` and `assistant.health`.

Start-up cost: on Render's free tier (0.1 CPU) each CPU second spent before the port opens is ten
seconds of a visitor's wait, and `import chainlit` alone costs about two. So this module imports
only what the server needs to open its port; the database driver, the data layer, the chat turn
and the answer pipeline (with `openai` and `tiktoken` when an LLM is configured) are imported by
the background warm-up once the port accepts connections (see `assistant.ui.runtime`), or by the
first handler that needs them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

# `chainlit run assistant/app.py` loads this file by path; the `chainlit` console script does not put
# the repository root on sys.path, so make `import assistant` work however the app is started.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import chainlit as cl  # noqa: E402
from chainlit.config import config as chainlit_config  # noqa: E402
from chainlit.server import app as server_app  # noqa: E402

from assistant.config import Settings  # noqa: E402
from assistant.health import HealthChecker, install_healthz  # noqa: E402
from assistant.originals import Originals, install_originals  # noqa: E402
from assistant.ui import documents, upload_chat  # noqa: E402
from assistant.ui.ci_mode import restore_openai_key  # noqa: E402
from assistant.ui.cors import apply_allowed_origins  # noqa: E402
from assistant.ui.login import enable_password_login  # noqa: E402
from assistant.ui.page import install_offline_page  # noqa: E402
from assistant.ui.runtime import Runtime  # noqa: E402
from assistant.ui.upload_routes import install_upload_routes  # noqa: E402
from assistant.ui.user_scope import install_user_scope  # noqa: E402
from assistant.ui.watermark import install_watermark  # noqa: E402

if TYPE_CHECKING:
    from assistant.datalayer import ChatDataLayer
    from assistant.retrieval.search import Retriever


def _chat_tables(retriever: Retriever) -> None:
    """Create or migrate the chat's tables once the database is open."""
    from assistant.datalayer import ensure_chat_schema

    ensure_chat_schema(retriever.store)


def _turn() -> ModuleType:
    """The chat turn's building blocks (imported by the warm-up, or here on first use)."""
    from assistant.ui import turn

    return turn


restore_openai_key()  # `CI` in the environment made `chainlit run` replace it with a fake key
settings = Settings.from_env()
runtime = Runtime(settings)  # one Retriever + ChatPipeline per process, shared by all sessions
runtime.on_ready(_chat_tables)
apply_allowed_origins(settings.allowed_origins)  # ALLOWED_ORIGINS -> CORS of the running server
install_upload_routes(server_app, settings)  # upload limits and who may upload (UPLOAD_*, ASSISTANT_ADMINS)
install_originals(server_app, Originals(lambda: runtime))  # GET /documents/{id}: a cited file's original
install_watermark(server_app, settings.llm_enabled)  # no "LLMs can make mistakes" without an LLM
install_healthz(server_app, HealthChecker(lambda: runtime))
enable_password_login(settings)  # ASSISTANT_USERS set: Chainlit's login form; else an open chat
install_user_scope(server_app)  # history and ratings are read and changed only by their owner
install_offline_page(server_app)  # the page asks no third party for anything (KaTeX, fonts), og tags


@cl.data_layer
def data_layer() -> ChatDataLayer:
    """Our own persistence (threads, feedback) on the Store's pool, not Chainlit's asyncpg layer."""
    from assistant.datalayer import ChatDataLayer

    return ChatDataLayer(lambda: runtime.retriever().store)


@cl.on_app_startup
def warm_up() -> None:
    """Open the database and load the embedder in the background once the port accepts connections."""
    runtime.start_warmup(listening=(chainlit_config.run.host, chainlit_config.run.port))


@cl.on_app_shutdown
def shut_down() -> None:
    """Release the embedded database (Chainlit may exit without running atexit handlers)."""
    from assistant.retrieval.database import stop_embedded

    stop_embedded()


@cl.set_starters
async def starters(user: cl.User | None = None, language: str | None = None) -> list[cl.Starter]:
    """Starter questions drawn from the indexed documents' titles and sections."""
    return [cl.Starter(label=s.label, message=s.message) for s in await runtime.astarters()]


@cl.on_chat_start
async def chat_start() -> None:
    """Offer the per-session search settings and the /documents command."""
    await _turn().start_session(runtime)
    await documents.offer_commands()


@cl.on_settings_update
async def settings_update(values: dict) -> None:
    """Validate changed settings (they apply to this session's next questions)."""
    await _turn().settings_changed(values, runtime)


@cl.on_message
async def on_message(message: cl.Message) -> None:
    """`/documents`; or index attached files, then answer the text (from those files when any)."""
    listing = documents.command_text(message)
    if listing is not None:
        await documents.show_list(runtime, listing)
        return
    if not upload_chat.attached_files(message):
        await _turn().answer(runtime, message)
        return
    added = await upload_chat.add_files(runtime, message)
    if added and (message.content or "").strip():
        await _turn().answer(runtime, message, documents=added)


@cl.action_callback(documents.ACT_LIST)
async def documents_more(action: cl.Action) -> None:
    """The document list's "Show more"."""
    await documents.more(runtime, action)


@cl.action_callback(documents.ACT_ASK)
async def document_remove_ask(action: cl.Action) -> None:
    """A document's "Remove" button: asks for a confirmation."""
    await documents.ask_remove(runtime, action)


@cl.action_callback(documents.ACT_REMOVE)
async def document_remove(action: cl.Action) -> None:
    """The confirmation: remove the document (admins only)."""
    await documents.remove(runtime, action)


@cl.action_callback(documents.ACT_KEEP)
async def document_keep(action: cl.Action) -> None:
    """The confirmation's "Keep it"."""
    await documents.keep(runtime, action)


@cl.on_chat_end
def chat_end() -> None:
    """Free the session's message list (upstream leak #2951)."""
    _turn().end_session()
