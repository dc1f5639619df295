"""Embedding-provider faults end to end, and the circuit breaker that contains them.

The chat pipeline (extractive, or the fake LLM) runs over a real Retriever on the sample corpus
whose query embeddings come from the loopback Hugging Face stand-in. The stand-in is scripted into
outages (503 loading, 429 Retry-After, 500, hangs, dropped connections, malformed JSON, wrong
vector size, flapping), and its request counter proves that back-off and the breaker are real:
during an outage of many messages it sees at most the threshold's calls plus one per probe.
The breaker's clock is replaced by a hand-moved one wherever the test must not depend on timing.

Time bounds asserted here are hang checks with wide margins, not performance measurements.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from assistant.chat import Answer, ChatPipeline
from assistant.chat.extractive import LABEL_LLM_DOWN
from assistant.config import Settings
from assistant.retrieval.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from assistant.retrieval.embedders import make_embedder
from assistant.retrieval.errors import CircuitOpenError, EmbeddingError
from assistant.retrieval.ingest import ingest_paths
from assistant.retrieval.search import Retriever
from assistant.retrieval.store import Store
from tests.conftest import ROOT
from tests.fakes.embedding_server import EmbeddingServer
from tests.fakes.llm_server import FakeLLMServer
from tests.test_chat_pipeline import collect

QUESTIONS = [q["question"] for q in json.loads((ROOT / "tests" / "data" / "sample_questions.json").read_text())]
HANG_BOUND = 20.0  # seconds: far above every deadline used here; only a hang would reach it
# EMBEDDING_TIMEOUT / EMBEDDING_DEADLINE for these tests: short, yet roomy enough for the stand-in to
# embed with the real model on a busy machine (a healthy request must never time out here).
TIMEOUT, DEADLINE = 1.0, 1.2
THRESHOLD = 2  # EMBEDDING_BREAKER_FAILURES


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# -- the breaker on its own ---------------------------------------------------------------------


def failing(message: str = "provider down") -> Callable[[], Any]:
    def fn() -> Any:
        raise EmbeddingError(message, retryable=True)
    return fn


def test_breaker_opens_after_consecutive_failures_and_stops_calling(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    breaker = CircuitBreaker("Test API", failures=3, cooldown=30, clock=clock)
    calls = []

    def fn() -> None:
        calls.append(1)
        raise EmbeddingError("HTTP 500")

    caplog.set_level(logging.INFO, logger="assistant.retrieval.breaker")
    for _ in range(3):
        with pytest.raises(EmbeddingError) as err:
            breaker.call(fn)
        assert not isinstance(err.value, CircuitOpenError)
    assert breaker.state == OPEN and len(calls) == 3
    for _ in range(50):
        with pytest.raises(CircuitOpenError, match=r"Test API is paused after 3 failures in a row, next try in 30 s; "
                                                   r"last error: HTTP 500"):
            breaker.call(fn)
    assert len(calls) == 3 and breaker.rejected == 50
    (record,) = caplog.records  # one line for the state change, none per rejected call
    assert record.levelno == logging.WARNING and "circuit open" in record.getMessage()


def test_successes_reset_the_count_so_flapping_never_opens_it() -> None:
    breaker = CircuitBreaker("Test API", failures=2, cooldown=30, clock=Clock())
    for _ in range(10):
        with pytest.raises(EmbeddingError):
            breaker.call(failing())
        assert breaker.call(lambda: "ok") == "ok"
    assert breaker.state == CLOSED and breaker.rejected == 0


def test_half_open_lets_one_probe_through_and_closes_on_success(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    breaker = CircuitBreaker("Test API", failures=1, cooldown=10, clock=clock)
    with pytest.raises(EmbeddingError):
        breaker.call(failing())
    clock.advance(9.5)
    with pytest.raises(CircuitOpenError, match="next try in 1 s"):
        breaker.call(lambda: "not called")
    clock.advance(0.5)
    assert breaker.state == HALF_OPEN

    started, release = threading.Event(), threading.Event()
    outcome: dict[str, Any] = {}

    def probe() -> str:
        started.set()
        release.wait(5)
        return "vector"

    thread = threading.Thread(target=lambda: outcome.setdefault("probe", breaker.call(probe)))
    thread.start()
    assert started.wait(5)
    with pytest.raises(CircuitOpenError, match="a trial call is under way"):  # only one probe at a time
        breaker.call(lambda: "not called")
    caplog.set_level(logging.INFO, logger="assistant.retrieval.breaker")
    release.set()
    thread.join(5)
    assert outcome["probe"] == "vector" and breaker.state == CLOSED
    assert breaker.call(lambda: "next") == "next"
    assert [r.getMessage() for r in caplog.records if "circuit closed" in r.getMessage()] != []


def test_failed_probe_reopens_for_another_cooldown() -> None:
    clock = Clock()
    breaker = CircuitBreaker("Test API", failures=2, cooldown=10, clock=clock)
    for _ in range(2):
        with pytest.raises(EmbeddingError):
            breaker.call(failing())
    clock.advance(10)
    with pytest.raises(EmbeddingError) as err:
        breaker.call(failing("still down"))  # the probe reaches the provider
    assert not isinstance(err.value, CircuitOpenError)
    assert breaker.state == OPEN
    clock.advance(9)
    with pytest.raises(CircuitOpenError, match="last error: still down"):
        breaker.call(lambda: "not called")
    clock.advance(1)
    assert breaker.call(lambda: "back") == "back" and breaker.state == CLOSED


def test_a_bug_in_the_probe_frees_the_probe_slot() -> None:
    clock = Clock()
    breaker = CircuitBreaker("Test API", failures=1, cooldown=1, clock=clock)
    with pytest.raises(EmbeddingError):
        breaker.call(failing())
    clock.advance(1)

    def bug() -> None:
        raise KeyError("not a provider failure")

    with pytest.raises(KeyError):
        breaker.call(bug)
    assert breaker.call(lambda: "probe again") == "probe again"


def test_zero_failures_disables_the_breaker() -> None:
    breaker = CircuitBreaker("Test API", failures=0, cooldown=30, clock=Clock())
    for _ in range(20):
        with pytest.raises(EmbeddingError) as err:
            breaker.call(failing())
        assert not isinstance(err.value, CircuitOpenError)
    assert breaker.state == CLOSED


def test_breaker_is_consistent_under_many_threads() -> None:
    breaker = CircuitBreaker("Test API", failures=3, cooldown=0.0)
    counts = {"ok": 0, "failed": 0, "rejected": 0}
    lock = threading.Lock()

    def worker(seed: int) -> None:
        for i in range(200):
            fn = failing() if (seed + i) % 3 else (lambda: None)
            try:
                breaker.call(fn)
                key = "ok"
            except CircuitOpenError:
                key = "rejected"
            except EmbeddingError:
                key = "failed"
            with lock:
                counts[key] += 1

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sum(counts.values()) == 1600
    assert counts["rejected"] == breaker.rejected
    assert breaker.state in (CLOSED, OPEN, HALF_OPEN)
    assert breaker.call(lambda: "works") == "works" and breaker.state == CLOSED  # cooldown 0: probes at once


# -- the chat over a failing provider -----------------------------------------------------------


@dataclasses.dataclass
class Chat:
    """A pipeline over the sample corpus whose query embeddings come from the stand-in."""

    server: EmbeddingServer
    retriever: Retriever
    pipeline: ChatPipeline
    clock: Clock
    llm_server: FakeLLMServer | None = None
    times: list[float] = dataclasses.field(default_factory=list)

    @property
    def breaker(self) -> CircuitBreaker:
        return self.retriever.embedder.inner.breaker  # type: ignore[attr-defined]

    async def ask(self, question: str) -> Answer:
        started = time.monotonic()
        _, answer = await collect(self.pipeline, question)
        self.times.append(time.monotonic() - started)
        return answer

    async def ask_counting(self, question: str) -> tuple[Answer, int]:
        """The answer and how many requests the stand-in received meanwhile."""
        before = self.server.request_count
        answer = await self.ask(question)
        return answer, self.server.request_count - before


@pytest.fixture
def make_chat(sample_database: str, embedding_server: EmbeddingServer,
              tmp_path: Path) -> Iterator[Callable[..., Chat]]:
    made: list[Chat] = []
    llm_servers: list[FakeLLMServer] = []

    def make(*, llm: bool = False, fake_clock: bool = True, **changes: Any) -> Chat:
        base = embedding_server.settings(
            "hf", database_url=sample_database, data_dir=tmp_path / "data", sample_docs=False,
            embedding_timeout=TIMEOUT, embedding_deadline=DEADLINE, query_embedding_deadline=DEADLINE,
            embedding_breaker_failures=THRESHOLD,
            embedding_breaker_cooldown=30.0, query_cache_size=0,
        )
        if llm:
            llm_servers.append(FakeLLMServer().start())
            fake = llm_servers[-1].settings()
            base = dataclasses.replace(base, openai_api_key=fake.openai_api_key, openai_base_url=fake.openai_base_url,
                                       llm_model=fake.llm_model, llm_timeout=fake.llm_timeout,
                                       llm_max_retries=fake.llm_max_retries)
        settings: Settings = dataclasses.replace(base, **changes)
        retriever = Retriever(Store.open(settings, announce=False), make_embedder(settings), settings)
        clock = Clock()
        chat = Chat(embedding_server, retriever, ChatPipeline(retriever, settings, titles=retriever.store), clock,
                    llm_servers[-1] if llm else None)
        if fake_clock:
            chat.breaker.clock = clock
        made.append(chat)
        return chat

    yield make
    for chat in made:
        chat.retriever.embedder.close()
        chat.retriever.store.close()
    for server in llm_servers:
        server.stop()


def assert_degraded(answer: Answer) -> None:
    """Answered from keyword search, and the user is told so."""
    assert answer.kind in ("extractive", "generated", "no_answer")
    assert answer.text.strip()
    assert any(n.startswith("Semantic search is unavailable (") for n in answer.notices), answer.notices


# fault, per-call request bounds while failing (min, max), and what the degraded notice names
FAULTS = {
    "503-loading": (("status", 503, {"error": "Model is loading", "estimated_time": 0.1}), (2, 12), "still loading"),
    "429-retry-after": (("status", 429, {"error": "rate limited"}, {"Retry-After": "0.2"}), (2, 7), "rate-limited"),
    "429-retry-after-60s": (("status", 429, {"error": "rate limited"}, {"Retry-After": "60"}), (1, 1),
                            "asks to wait 60 s"),
    "500": (("status", 500), (2, 5), "HTTP 500"),
    "hang": (("hang",), (1, 3), "timed out"),
    "drop": (("drop",), (2, 5), "unreachable"),
    "malformed-json": (("badjson",), (1, 1), "non-JSON body"),
    "wrong-dimension": (("dim", 100), (1, 1), "vectors of size 100"),
}


@pytest.mark.asyncio
@pytest.mark.reliability
@pytest.mark.parametrize("name", list(FAULTS))
async def test_outage_is_contained_by_the_breaker_and_heals_by_itself(
        make_chat: Callable[..., Chat], name: str, caplog: pytest.LogCaptureFixture) -> None:
    fault, (lo, hi), needle = FAULTS[name]
    chat = make_chat()
    chat.server.fail(fault)
    questions = iter(QUESTIONS * 2)

    # Closed: each message tries the provider (with its retries) and falls back to full-text.
    for _ in range(THRESHOLD):
        answer, requests = await chat.ask_counting(next(questions))
        assert_degraded(answer)
        assert any(needle in n for n in answer.notices), answer.notices
        assert lo <= requests <= hi  # retried with back-off, not hammered, and within the deadline
    assert chat.breaker.state == OPEN

    # Open: the provider is left alone; answers come straight from full-text; no log line per message.
    caplog.clear()
    caplog.set_level(logging.INFO)
    outage_messages = 8
    for _ in range(outage_messages):
        answer, requests = await chat.ask_counting(next(questions))
        assert requests == 0
        assert_degraded(answer)
        assert any(f"paused after {THRESHOLD} failures in a row" in n for n in answer.notices), answer.notices
    before = chat.server.request_count
    sync = chat.retriever.search(next(questions))  # the CLI's synchronous path shares the breaker
    assert sync.degraded and chat.server.request_count == before
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("assistant")]

    # Cool-down over, still failing: exactly one message probes, then it is quiet again.
    chat.clock.advance(30)
    answer, requests = await chat.ask_counting(next(questions))
    assert_degraded(answer)
    assert lo <= requests <= hi
    answer, requests = await chat.ask_counting(next(questions))
    assert_degraded(answer)
    assert requests == 0

    total = chat.server.request_count
    assert total <= (THRESHOLD + 1) * hi  # 12 messages in the outage: threshold calls plus one probe

    # Healed: the next probe succeeds and semantic search is back for every message after it.
    chat.server.heal()
    chat.clock.advance(30)
    for _ in range(3):
        answer, requests = await chat.ask_counting(next(questions))
        assert requests >= 1
        assert not any(n.startswith("Semantic search is unavailable") for n in answer.notices)
        assert answer.kind == "extractive" and answer.cited
    assert chat.breaker.state == CLOSED
    assert max(chat.times) < HANG_BOUND
    # Figures for docs/RELIABILITY.md (shown with `pytest -rP`).
    print(f"{name}: {THRESHOLD + outage_messages + 3} outage messages, {total} provider requests, "
          f"max answer {max(chat.times):.2f} s")


@pytest.mark.asyncio
@pytest.mark.slow
async def test_recovery_is_automatic_on_the_real_clock(make_chat: Callable[..., Chat]) -> None:
    cooldown = 0.5
    chat = make_chat(fake_clock=False, embedding_breaker_cooldown=cooldown)
    chat.server.fail(("status", 401))  # fails at once: one request per call
    outage_started = time.monotonic()
    for question in QUESTIONS[:6]:
        answer, _ = await chat.ask_counting(question)
        assert_degraded(answer)
        assert any("HUGGINGFACE_TOKEN" in n for n in answer.notices)
    probes_possible = int((time.monotonic() - outage_started) / cooldown) + 1
    outage_requests = chat.server.request_count
    assert THRESHOLD <= outage_requests <= THRESHOLD + probes_possible
    chat.server.heal()
    time.sleep(cooldown)
    answer, requests = await chat.ask_counting(QUESTIONS[6])
    assert requests >= 1 and answer.kind == "extractive"
    assert not any(n.startswith("Semantic search is unavailable") for n in answer.notices)
    print(f"real clock: 6 outage messages, {outage_requests} provider requests "
          f"(allowed {THRESHOLD}..{THRESHOLD + probes_possible}); max answer {max(chat.times):.2f} s")


@pytest.mark.asyncio
@pytest.mark.slow
async def test_flapping_per_request_is_hidden_by_retries(make_chat: Callable[..., Chat]) -> None:
    chat = make_chat()
    chat.server.flap(("status", 500), healthy=1, failing=1)
    for question in QUESTIONS[:6]:
        answer, requests = await chat.ask_counting(question)
        assert 1 <= requests <= 2  # a failed request is retried once and gets the healthy answer
        assert not any(n.startswith("Semantic search is unavailable") for n in answer.notices)
    assert chat.breaker.state == CLOSED and chat.breaker.rejected == 0


@pytest.mark.asyncio
@pytest.mark.slow
async def test_flapping_per_message_degrades_only_the_failed_ones(make_chat: Callable[..., Chat]) -> None:
    chat = make_chat()
    chat.server.flap(("status", 401), healthy=1, failing=1)  # a final error: one request per message
    degraded = []
    for question in QUESTIONS[:8]:
        answer, requests = await chat.ask_counting(question)
        assert requests == 1
        degraded.append(any(n.startswith("Semantic search is unavailable") for n in answer.notices))
    assert degraded == [False, True] * 4
    assert chat.breaker.state == CLOSED and chat.breaker.rejected == 0  # never two failures in a row


@pytest.mark.asyncio
@pytest.mark.slow
async def test_model_loading_once_is_waited_out_not_degraded(make_chat: Callable[..., Chat]) -> None:
    chat = make_chat()
    chat.server.script(("status", 503, {"error": "Model is loading", "estimated_time": 0.2}))
    answer, requests = await chat.ask_counting(QUESTIONS[0])
    assert requests >= 2
    assert not any(n.startswith("Semantic search is unavailable") for n in answer.notices)
    first, second = chat.server.requests
    assert second.at - first.at >= 0.15  # waited the estimated time


@pytest.mark.asyncio
@pytest.mark.slow
async def test_embedder_down_then_llm_down_too_every_message_is_answered(make_chat: Callable[..., Chat]) -> None:
    chat = make_chat(llm=True)
    assert chat.llm_server is not None
    chat.server.fail(("status", 500))
    for question in QUESTIONS[1:4]:  # the fake LLM answers from the full-text hits
        answer = await chat.ask(question)
        assert_degraded(answer)
        assert answer.kind == "generated" and answer.cited
    chat.llm_server.script(*[("status", 503)] * 3)  # now the LLM fails as well (no retries configured)
    for question in QUESTIONS[4:7]:
        answer = await chat.ask(question)
        assert_degraded(answer)
        assert answer.kind == "extractive" and answer.text.startswith(LABEL_LLM_DOWN)
        assert any("service failed" in n and "retrieval-only" in n for n in answer.notices)
    await chat.pipeline.aclose()
    assert len(chat.llm_server.chat_requests) == 6
    assert chat.server.request_count <= THRESHOLD * FAULTS["500"][1][1]  # the breaker: quiet after two calls
    assert max(chat.times) < HANG_BOUND


@pytest.mark.asyncio
@pytest.mark.slow
async def test_questions_wait_the_query_deadline_not_the_ingest_one(make_chat: Callable[..., Chat]) -> None:
    """Before QUERY_EMBEDDING_DEADLINE, each question before the breaker opened waited out the ingest
    deadline (EMBEDDING_DEADLINE, 30 s by default). Here the ingest deadline is 30 s and the request
    timeout 10 s, as by default; a question gives up after the query deadline and is answered."""
    chat = make_chat(embedding_timeout=10.0, embedding_deadline=30.0, query_embedding_deadline=0.6)
    chat.server.fail(("hang",))
    for _ in range(THRESHOLD):  # the questions that still reach the provider
        answer = await chat.ask(QUESTIONS[0])
        assert_degraded(answer)
        assert any("QUERY_EMBEDDING_DEADLINE=0.6 s" in n for n in answer.notices), answer.notices
    assert max(chat.times) < 5.0  # 0.6 s and overhead; the ingest deadline would have been 30 s
    assert chat.breaker.state == OPEN


@pytest.mark.slow
def test_ingest_batches_keep_their_own_longer_deadline(embedding_server: EmbeddingServer, tmp_path: Path) -> None:
    settings = embedding_server.settings("hf", data_dir=tmp_path / "data", embedding_timeout=TIMEOUT,
                                         embedding_deadline=2.5, query_embedding_deadline=0.5,
                                         embedding_breaker_failures=0)
    embedder = make_embedder(settings)
    try:
        embedding_server.fail(("status", 500))
        started = time.monotonic()
        with pytest.raises(EmbeddingError, match=r"QUERY_EMBEDDING_DEADLINE=0\.5 s"):
            embedder.embed_query("how do I reset the pump?")
        query_seconds = time.monotonic() - started
        started = time.monotonic()
        with pytest.raises(EmbeddingError, match=r"HTTP 500.*EMBEDDING_DEADLINE=2\.5 s"):
            embedder.embed_passages(["The pump is reset with the red lever."])
        passage_seconds = time.monotonic() - started
        assert query_seconds < 2.0 <= passage_seconds < HANG_BOUND  # each call kind kept retrying until its own
    finally:
        embedder.close()


# -- ingest is never silently degraded ------------------------------------------------------------


@pytest.mark.slow
def test_ingest_during_an_outage_stops_with_the_providers_error_even_with_the_breaker_open(
        embedding_server: EmbeddingServer, settings: Settings, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for n in range(3):
        (docs / f"page{n}.md").write_text(f"# Page {n}\n\nThe pump number {n} is reset with the red lever.\n")
    hf = embedding_server.settings("hf", database_url=settings.database_url, data_dir=settings.data_dir,
                                   embedding_timeout=TIMEOUT, embedding_deadline=DEADLINE,
                                   embedding_breaker_failures=1, embedding_breaker_cooldown=3600,
                                   embedding_batch_size=1)  # one short passage a request: TIMEOUT holds
    embedder = make_embedder(hf)
    store = Store.open(hf, announce=False)
    try:
        embedding_server.fail(("status", 500))
        with pytest.raises(EmbeddingError):
            embedder.embed_query("trip the breaker")
        assert embedder.inner.breaker.state == OPEN  # type: ignore[attr-defined]

        before = embedding_server.request_count
        report = ingest_paths([docs], store, embedder, hf, progress=False, log=lambda _: None)
        assert embedding_server.request_count > before  # the provider was really asked, not skipped
        assert not report.added and store.document_count() == 0
        (_, reason), *rest = report.failed
        assert "HTTP 500" in reason and "EMBEDDING_DEADLINE" in reason and "paused" not in reason
        assert [r for _, r in rest] == ["not attempted: stopped after the error above"] * 2

        embedding_server.heal()  # the query breaker is still open; ingest does not care
        report = ingest_paths([docs], store, embedder, hf, progress=False, log=lambda _: None)
        assert len(report.added) == 3 and store.document_count() == 3 and not report.failed
        assert embedder.inner.breaker.state == OPEN  # type: ignore[attr-defined]
    finally:
        embedder.close()
        store.close()


def test_direct_probe_sees_the_paused_provider_without_a_request(make_chat: Callable[..., Chat]) -> None:
    chat = make_chat()
    chat.server.fail(("status", 402))
    inner = chat.retriever.embedder.inner  # type: ignore[attr-defined]
    for _ in range(THRESHOLD):
        with pytest.raises(EmbeddingError):
            inner.embed_query("ping")
    before = chat.server.request_count
    with pytest.raises(CircuitOpenError, match=r"paused after 2 failures in a row, next try in 30 s; .*\(402\)"):
        inner.embed_query("ping")
    assert chat.server.request_count == before
