"""The chat server under load, over Chainlit's real Socket.IO protocol (no browser).

One `chainlit run assistant/app.py` server on the session's sample-corpus database, with the
loopback fake LLM: 20 chat sessions at once ask 10 questions each (follow-ups included, so the
condense step runs too) while 200 retrievals run concurrently in this process against the same
database. Every message must be answered without an error, every retrieval must find hits, the
server must stay healthy, and its RSS (sampled all along) must stay under the 512 MB of the
smallest host it targets. The figures go to test-artifacts/load.json for the record; latencies
are reported, never asserted (bench/latency.py measures them).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench._common import MemorySampler, percentile
from tests.conftest import ARTIFACTS, ROOT, make_settings
from tests.fakes.app_server import AppServer
from tests.fakes.llm_server import MODEL, FakeLLMServer
from tests.fakes.socket_chat import Reply, run_sessions

pytestmark = pytest.mark.reliability

SESSIONS, MESSAGES, RETRIEVALS = 20, 10, 200
RSS_LIMIT = 512 * 2**20


def question_pool() -> list[str]:
    """Distinct questions about the sample corpus (the evaluation set and the CLI benchmark's)."""
    data = json.loads((ROOT / "tests" / "data" / "sample_questions.json").read_text(encoding="utf-8"))
    extra = ["How do I deploy on Render?", "how do I undo a deletion?", "Which embedding provider should I use?",
             "memory limit on the free plan", "Do PDF citations include page numbers?",
             "What happens when the Hugging Face API is down?", "pgvector extension is missing",
             "How are documents chunked?", "ALLOWED_ORIGINS for the chat widget",
             "Can I use it without an OpenAI account?"]
    return list(dict.fromkeys([d["question"] for d in data] + extra))


@pytest.fixture(scope="module")
def loaded_server(sample_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    """The app with the scripted LLM (threaded loopback server in this process)."""
    work = tmp_path_factory.mktemp("load")
    with FakeLLMServer() as llm:
        server = AppServer("load", {
            "DATABASE_URL": sample_database, "ASSISTANT_SAMPLE_DOCS": "0", "ASSISTANT_DATA_DIR": str(work / "data"),
            "OPENAI_API_KEY": "test", "OPENAI_BASE_URL": llm.base_url, "LLM_MODEL": MODEL,
            "LLM_TIMEOUT": "20", "LLM_MAX_RETRIES": "0",
        }, work)
        try:
            server.wait_ready()
            yield server
        finally:
            server.stop()


async def _retrievals(database_url: str, data_dir: Path, questions: list[str]) -> tuple[list, list[float], list[str]]:
    """RETRIEVALS concurrent Retriever.asearch calls in this process; (results, ms each, errors)."""
    from assistant.retrieval import open_retriever

    retriever = await asyncio.to_thread(
        open_retriever, make_settings(database_url=database_url, data_dir=data_dir, query_cache_size=0),
        announce=False, sample_docs=False)
    results: list = []
    times: list[float] = []
    errors: list[str] = []

    async def one(i: int) -> None:
        mode = ("hybrid", "vector", "text")[i % 3]
        t0 = time.perf_counter()
        try:
            results.append(await retriever.asearch(questions[i % len(questions)], k=5, mode=mode))
            times.append((time.perf_counter() - t0) * 1000)
        except Exception as exc:  # counted and reported: the assertion below names them
            errors.append(f"{mode}: {type(exc).__name__}: {exc}")

    try:
        await asyncio.gather(*[one(i) for i in range(RETRIEVALS)])
    finally:
        await asyncio.to_thread(retriever.store.close)
    return results, times, errors


def test_twenty_sessions_and_two_hundred_retrievals_at_once(
        loaded_server: AppServer, sample_database: str, tmp_path: Path) -> None:
    pool = question_pool()
    per_session = [[pool[(s * 3 + m) % len(pool)] for m in range(MESSAGES)] for s in range(SESSIONS)]
    sampler = MemorySampler(loaded_server.proc.pid, None, interval=0.05)
    sampler.start()

    async def load() -> tuple[list[list[Reply]], tuple[list, list[float], list[str]]]:
        chats = asyncio.create_task(run_sessions(loaded_server.url, per_session, timeout=90))
        searches = asyncio.create_task(_retrievals(sample_database, tmp_path / "data", pool))
        return await chats, await searches

    t0 = time.monotonic()
    try:
        sessions, (results, search_ms, search_errors) = asyncio.run(load())
    finally:
        peak = sampler.stop().child_rss
    wall = time.monotonic() - t0
    health = httpx.get(loaded_server.url + "/healthz", timeout=10)

    replies = [r for s in sessions for r in s]
    failed = [(r.question, r.errors or "no answer text") for r in replies if not r.ok]
    ttft = [r.ttft_ms for r in replies if r.ttft_ms is not None]
    total = [r.total_ms for r in replies if r.total_ms is not None]
    record = {
        "sessions": SESSIONS, "messages_per_session": MESSAGES, "retrievals": RETRIEVALS,
        "answered": sum(r.ok for r in replies), "failed": len(failed), "retrieval_errors": len(search_errors),
        "server_peak_rss_mb": round(peak / 2**20, 1), "wall_s": round(wall, 1),
        "ttft_ms_p50": round(percentile(ttft, 50)), "ttft_ms_p95": round(percentile(ttft, 95)),
        "answer_ms_p50": round(percentile(total, 50)), "answer_ms_p95": round(percentile(total, 95)),
        "retrieval_ms_p50": round(percentile(search_ms, 50)), "retrieval_ms_p95": round(percentile(search_ms, 95)),
        "cpus": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "load.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    print(f"\nload: {json.dumps(record)}")

    assert not failed, f"{len(failed)} of {len(replies)} messages not answered, e.g. {failed[:3]}"
    assert len(replies) == SESSIONS * MESSAGES
    for r in replies:  # the scripted LLM answers from the retrieved sources, citing them
        assert "[1]" in r.text or "couldn't find" in r.text, (r.question, r.text[:300])
        assert r.streamed.strip(), f"{r.question!r}: the answer was not streamed"
    assert not search_errors, search_errors[:5]
    assert len(results) == RETRIEVALS and all(res.hits and not res.degraded for res in results)
    assert health.status_code == 200, health.text
    assert loaded_server.proc.poll() is None, "the server died under load"
    assert 0 < peak < RSS_LIMIT, f"server peak RSS {peak / 2**20:.0f} MiB (limit {RSS_LIMIT / 2**20:.0f})"
    log = loaded_server.log.read_text(errors="replace")
    assert "Traceback" not in log and "chat turn crashed" not in log, log[-3000:]
