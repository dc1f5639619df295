"""`assistant.app.install()` on Chainlit's real server, in this test process, with test settings.

What `chainlit run assistant/app.py` does at start-up, minus the port: the handlers, routes,
middleware, login and data layer go onto `chainlit.server.app`. The runtime never opens the
default database unless the test gives one that does.
"""

from __future__ import annotations

from assistant.app import ChatApp, install
from assistant.config import Settings
from assistant.retrieval.errors import DatabaseError
from assistant.retrieval.search import Retriever
from assistant.ui.runtime import Runtime
from tests.conftest import make_settings


def refuse_default(settings: Settings) -> Retriever:
    """A Runtime opener for tests that must not reach a database."""
    raise DatabaseError("tests must not open the default database")


def install_for_tests(settings: Settings | None = None, runtime: Runtime | None = None) -> ChatApp:
    """Wire Chainlit's server with `settings` (default: an empty environment's) and `runtime`."""
    settings = settings or make_settings()
    return install(settings, runtime=runtime or Runtime(settings, opener=refuse_default))
