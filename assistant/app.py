"""Doc Assistant's Chainlit app: handlers only, thin glue between the UI and chat/ + retrieval/.

Run with `chainlit run assistant/app.py` from the repository root (or `python -m assistant serve`).
Everything with logic lives in modules tests reach without a browser: `assistant.ui.*` (the turn,
sources, starters, settings, runtime, CORS), `assistant.datalayer` and `assistant.health`.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `chainlit run assistant/app.py` loads this file by path; the `chainlit` console script does not put
# the repository root on sys.path, so make `import assistant` work however the app is started.
_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import chainlit as cl  # noqa: E402
from chainlit.server import app as server_app  # noqa: E402

from assistant.config import Settings  # noqa: E402
from assistant.datalayer import ChatDataLayer, ensure_chat_schema, install_user_scope  # noqa: E402
from assistant.health import HealthChecker, install_healthz  # noqa: E402
from assistant.retrieval.database import stop_embedded  # noqa: E402
from assistant.ui import turn  # noqa: E402
from assistant.ui.cors import apply_allowed_origins  # noqa: E402
from assistant.ui.login import enable_password_login  # noqa: E402
from assistant.ui.runtime import Runtime  # noqa: E402
from assistant.ui.watermark import install_watermark  # noqa: E402

settings = Settings.from_env()
runtime = Runtime(settings)  # one Retriever + ChatPipeline per process, shared by all sessions
runtime.on_ready(lambda retriever: ensure_chat_schema(retriever.store))
apply_allowed_origins(settings.allowed_origins)  # ALLOWED_ORIGINS -> CORS of the running server
install_healthz(server_app, HealthChecker(lambda: runtime))
enable_password_login(settings)  # ASSISTANT_USERS set: Chainlit's login form; else an open chat
install_user_scope(server_app)  # history and ratings are read and changed only by their owner
install_watermark(server_app, settings.llm_enabled)  # no "LLMs can make mistakes" without an LLM


@cl.data_layer
def data_layer() -> ChatDataLayer:
    """Our own persistence (threads, feedback) on the Store's pool, not Chainlit's asyncpg layer."""
    return ChatDataLayer(lambda: runtime.retriever().store)


@cl.on_app_startup
def warm_up() -> None:
    """Open the database and load the embedder in the background, before the first question."""
    runtime.start_warmup()


@cl.on_app_shutdown
def shut_down() -> None:
    """Release the embedded database (Chainlit may exit without running atexit handlers)."""
    stop_embedded()


@cl.set_starters
async def starters(user: cl.User | None = None, language: str | None = None) -> list[cl.Starter]:
    """Starter questions drawn from the indexed documents' titles and sections."""
    return [cl.Starter(label=s.label, message=s.message) for s in await runtime.astarters()]


@cl.on_chat_start
async def chat_start() -> None:
    """Offer the per-session search settings."""
    await turn.start_session(runtime)


@cl.on_settings_update
async def settings_update(values: dict) -> None:
    """Validate changed settings (they apply to this session's next questions)."""
    await turn.settings_changed(values, runtime)


@cl.on_message
async def on_message(message: cl.Message) -> None:
    """Search, stream the answer, attach the sources."""
    await turn.answer(runtime, message)


@cl.on_chat_end
def chat_end() -> None:
    """Free the session's message list (upstream leak #2951)."""
    turn.end_session()
