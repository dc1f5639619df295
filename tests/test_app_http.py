"""HTTP side of the app: /healthz (ahead of Chainlit's catch-all) and CORS from ALLOWED_ORIGINS.

Requests go through Starlette's TestClient to Chainlit's real FastAPI app with our routes and
middleware installed by `assistant.app.install()` (no lifespan: Chainlit's shutdown hook would
end the test process).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from chainlit.config import config as cl_config
from chainlit.server import app as server_app
from chainlit.server import sio
from fastapi import FastAPI
from starlette.testclient import TestClient

from assistant.app import ChatApp
from assistant.config import Settings
from assistant.health import HealthChecker, install_healthz
from assistant.retrieval import open_retriever
from assistant.retrieval.errors import DatabaseError, EmbeddingError
from assistant.retrieval.search import Retriever
from assistant.ui.cors import apply_allowed_origins, origin_checker
from assistant.ui.runtime import Runtime
from tests.conftest import make_settings
from tests.fakes.installed_app import install_for_tests


@pytest.fixture(autouse=True)
def installed() -> ChatApp:
    """The app wired onto Chainlit's server with an empty environment's settings (no database)."""
    return install_for_tests()


@pytest.fixture(scope="module")
def retriever(sample_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Retriever]:
    settings = make_settings(database_url=sample_database, data_dir=tmp_path_factory.mktemp("http"))
    r = open_retriever(settings, announce=False, sample_docs=False)
    yield r
    r.store.close()


def client_for(runtime: Runtime, **kw: Any) -> TestClient:
    test_app = FastAPI()
    install_healthz(test_app, HealthChecker(runtime, **kw))
    return TestClient(test_app)


def wait_ready(runtime: Runtime) -> None:
    runtime.start_warmup().join(30)
    assert runtime.ready


def test_healthz_is_served_by_the_chainlit_app_before_its_catch_all(retriever: Retriever) -> None:
    runtime = Runtime(retriever.settings, opener=lambda s: retriever)
    install_for_tests(retriever.settings, runtime)
    paths = [getattr(r, "path", None) for r in server_app.router.routes]
    assert paths[0] == "/healthz"  # first: Chainlit's GET /{full_path:path} would answer with the UI
    assert paths.count("/healthz") == 1  # installing twice replaced the route, not stacked a second one
    wait_ready(runtime)
    response = TestClient(server_app).get("/healthz")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body == {"status": "ok", "database": "ok", "embedder": "ok", "documents": body["documents"],
                    "chat": "ok"}
    assert body["documents"] >= 10
    assert TestClient(server_app).get("/health").json() == {"status": "ok"}  # Chainlit's own stays


def test_healthz_reports_starting_then_ready(retriever: Retriever) -> None:
    gate = threading.Event()

    def slow_open(settings: Settings) -> Retriever:
        gate.wait(10)
        return retriever

    runtime = Runtime(retriever.settings, opener=slow_open)
    client = client_for(runtime)
    response = client.get("/healthz")
    assert response.status_code == 503 and response.json()["status"] == "starting"
    assert runtime.warming  # the health check itself started the warm-up
    gate.set()
    runtime.start_warmup().join(10)
    assert client.get("/healthz").status_code == 200


def test_healthz_reports_a_database_that_cannot_be_reached_and_recovers(retriever: Retriever) -> None:
    state = {"down": True}

    def opener(settings: Settings) -> Retriever:
        if state["down"]:
            raise DatabaseError("Cannot reach PostgreSQL at db:5432 (connection refused); check DATABASE_URL")
        return retriever

    runtime = Runtime(retriever.settings, opener=opener, retry_after=0.0)
    client = client_for(runtime)
    client.get("/healthz")
    runtime.start_warmup().join(10)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["status"] == "error" and "connection refused" in response.json()["database"]
    state["down"] = False
    client.get("/healthz")  # retries opening in the background
    runtime.start_warmup().join(10)
    assert client.get("/healthz").status_code == 200


class FailingEmbedder:
    """Stands in for a provider that is down (e.g. the Hugging Face API answering 503)."""

    provider, model, dim = "hf", "intfloat/multilingual-e5-small", 384
    calls = 0

    def embed_query(self, text: str) -> Any:
        FailingEmbedder.calls += 1
        raise EmbeddingError("Hugging Face API returned 503 after 3 tries", retryable=True)


def test_healthz_says_503_when_the_embedder_is_down_and_caches_the_check(retriever: Retriever) -> None:
    broken = Retriever(retriever.store, FailingEmbedder(), retriever.settings)  # type: ignore[arg-type]
    runtime = Runtime(retriever.settings, opener=lambda s: broken)
    runtime.pipeline()
    client = client_for(runtime, error_ttl=60.0)
    FailingEmbedder.calls = 0
    first = client.get("/healthz")
    assert first.status_code == 503
    body = first.json()
    assert body["database"] == "ok" and "503" in body["embedder"] and body["status"] == "error"
    client.get("/healthz")
    client.get("/healthz")
    assert FailingEmbedder.calls == 1  # not one embedding per health check


# -- CORS ----------------------------------------------------------------------------------------


@pytest.fixture
def restore_origins() -> Iterator[None]:
    before = list(cl_config.project.allow_origins)
    yield
    apply_allowed_origins(before)


def preflight(client: TestClient, origin: str) -> Any:
    return client.options("/project/settings", headers={
        "Origin": origin, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "content-type"})


def test_allowed_origins_restrict_cors_for_http_and_websocket(restore_origins: None) -> None:
    client = TestClient(server_app)
    assert preflight(client, "https://anything.example").status_code == 200  # default "*": everyone

    apply_allowed_origins(["https://docs.example.com", "https://www.example.com/"])
    assert cl_config.project.allow_origins == ["https://docs.example.com", "https://www.example.com"]
    ok = preflight(client, "https://docs.example.com")
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "https://docs.example.com"
    assert ok.headers["access-control-allow-credentials"] == "true"
    denied = preflight(client, "https://evil.example")
    assert denied.status_code == 400 and "access-control-allow-origin" not in denied.headers
    simple = client.get("/health", headers={"Origin": "https://www.example.com"})
    assert simple.headers["access-control-allow-origin"] == "https://www.example.com"

    # WebSockets are not covered by CORS: the Socket.IO server checks the Origin itself.
    handshake = "/ws/socket.io/?EIO=4&transport=polling"
    assert client.get(handshake, headers={"Origin": "https://evil.example"}).status_code == 400
    assert client.get(handshake, headers={"Origin": "https://docs.example.com"}).status_code == 200
    assert client.get(handshake, headers={"Origin": "http://testserver"}).status_code == 200  # the app itself

    apply_allowed_origins(["*"])
    assert sio.eio.cors_allowed_origins == []
    assert preflight(client, "https://evil.example").status_code == 200


def test_origin_checker_allows_same_origin_behind_a_proxy() -> None:
    check = origin_checker(["https://docs.example.com"])
    assert check("https://docs.example.com", {})
    assert check("https://assistant.onrender.com", {"HTTP_HOST": "10.0.0.5:10000",
                                                    "HTTP_X_FORWARDED_HOST": "assistant.onrender.com"})
    assert not check("https://evil.example", {"HTTP_HOST": "assistant.onrender.com"})
    assert check(None, {})


def test_install_applies_allowed_origins(installed: ChatApp) -> None:
    assert cl_config.project.allow_origins == list(installed.runtime.settings.allowed_origins)
    assert cl_config.ui.name == "Doc Assistant"
    assert cl_config.project.session_timeout <= 600
