"""LLM faults end to end: the real openai client against the loopback fake server, through the pipeline.

Covers what tests/test_chat_pipeline.py does not: streams that never end (bounded by LLM_DEADLINE
or by the token cap), a trickle that stays under the per-chunk timeout but not under the deadline,
retries counted at the server, malformed or error events mid-stream, citations of sources that do
not exist, and an outage over many messages. In every case the user gets an answer (generated,
partial with a notice, or retrieval-only) and the pipeline raises nothing.

Time bounds asserted here are hang checks with wide margins, not performance measurements.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from assistant.chat import Answer, ChatPipeline
from assistant.chat.extractive import LABEL_LLM_DOWN
from tests.fakes.llm_server import FakeLLMServer
from tests.fakes.llm_server import llm_server as llm_server_fixture
from tests.test_chat_pipeline import FakeRetriever, collect

llm_server = llm_server_fixture  # the fixture, found by pytest under this name

QUESTION = "How much RAM does the free Render service get?"
HANG_BOUND = 15.0  # seconds: far above every deadline used here; only a hang would reach it


async def ask(server: FakeLLMServer, question: str = QUESTION, history: list[dict] | None = None,
              **changes: Any) -> tuple[Answer, float]:
    """One chat turn against `server`; returns the answer and how long the turn took."""
    pipeline = ChatPipeline(FakeRetriever(), server.settings(**changes))
    started = time.monotonic()
    try:
        _, answer = await collect(pipeline, question, history)
    finally:
        await pipeline.aclose()
    return answer, time.monotonic() - started


# -- streams that do not end -------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.slow
async def test_endless_stream_is_cut_at_the_deadline_and_the_partial_answer_kept(llm_server: FakeLLMServer) -> None:
    llm_server.script(("endless", " and it keeps going", 0.05))
    answer, elapsed = await ask(llm_server, llm_timeout=1.0, llm_deadline=1.0)
    assert elapsed < HANG_BOUND
    assert answer.kind == "generated" and answer.truncated
    assert answer.text.startswith("and it keeps going and it keeps going")
    assert "The answer was cut off (the language model took too long to answer)." in answer.notices
    # The client hung up: the server's endless loop stopped writing.
    sent = llm_server.streamed
    time.sleep(0.3)
    assert llm_server.streamed <= sent + 1


@pytest.mark.asyncio
async def test_endless_fast_stream_is_cut_at_the_token_cap(llm_server: FakeLLMServer) -> None:
    llm_server.script(("endless", " word", 0.0))
    pipeline = ChatPipeline(FakeRetriever(), llm_server.settings(llm_max_answer_tokens=40, llm_deadline=60.0))
    started = time.monotonic()
    _, answer = await collect(pipeline, QUESTION)
    await pipeline.aclose()
    assert time.monotonic() - started < HANG_BOUND
    requested = llm_server.chat_requests[0].body["max_tokens"]
    assert requested <= 40
    assert answer.truncated and answer.kind == "generated"
    assert "The answer reached its length limit and was cut off." in answer.notices
    words = pipeline.counter.count(answer.text)
    assert requested < words <= 2 * requested + 32 + 1  # cut at the safety net, not before the request's own limit


@pytest.mark.asyncio
@pytest.mark.slow
async def test_slow_trickle_under_the_chunk_timeout_is_cut_at_the_deadline(llm_server: FakeLLMServer) -> None:
    text = "Render gives 512 MB [1]" + " and then some more" * 30 + "."
    llm_server.script(("answer", text, 0.05))  # every chunk well inside LLM_TIMEOUT, the whole far beyond
    answer, elapsed = await ask(llm_server, llm_timeout=0.5, llm_deadline=1.0)
    assert elapsed < HANG_BOUND
    assert answer.kind == "generated" and answer.truncated
    assert answer.text.startswith("Render gives 512 MB [1] and then") and len(answer.text) < len(text)
    assert answer.cited == [1] and not answer.unsupported
    assert "The answer was cut off (the language model took too long to answer)." in answer.notices


@pytest.mark.asyncio
@pytest.mark.slow
async def test_deadline_before_the_first_token_gives_a_retrieval_only_answer(llm_server: FakeLLMServer) -> None:
    llm_server.script(("stall", 5))  # inside LLM_TIMEOUT, beyond LLM_DEADLINE
    answer, elapsed = await ask(llm_server, llm_timeout=10.0, llm_deadline=1.0)
    assert elapsed < HANG_BOUND
    assert answer.kind == "extractive" and answer.text.startswith(LABEL_LLM_DOWN) and "[1]" in answer.text
    assert answer.notices == ["The language model took too long to answer; showing a retrieval-only answer."]


@pytest.mark.asyncio
@pytest.mark.slow
async def test_deadline_also_bounds_the_follow_up_condensing(llm_server: FakeLLMServer) -> None:
    llm_server.script(("stall", 5))
    history = [{"role": "user", "content": "How do I deploy to Render?"}, {"role": "assistant", "content": "So."}]
    answer, elapsed = await ask(llm_server, "and how much memory does it get?", history,
                                llm_timeout=10.0, llm_deadline=1.0)
    assert elapsed < HANG_BOUND
    assert len(llm_server.chat_requests) == 1  # the answer is not attempted after the condense failed
    assert answer.kind == "extractive" and "Render" in answer.query
    assert any("took too long" in n for n in answer.notices)


# -- retries, counted at the server ------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("actions", "retries", "requests", "kind", "needle"),
    [
        ([("status", 500), ("status", 500), ("answer", "512 MB [1].")], 2, 3, "generated", None),
        ([("status", 500)] * 3, 2, 3, "extractive", "service failed"),
        ([("status", 503)] * 2, 1, 2, "extractive", "service failed"),
        ([("status", 401)] * 3, 2, 1, "extractive", "API key"),  # never retried
        ([("status", 400, "bad prompt")] * 3, 2, 1, "extractive", "rejected the request"),  # never retried
        ([("drop",), ("answer", "512 MB [1].")], 1, 2, "generated", None),
        ([("stall", 3), ("stall", 3), ("answer", "512 MB [1].")], 2, 3, "generated", None),
        ([("stall", 3)] * 2, 1, 2, "extractive", "did not answer in time"),
    ],
    ids=["500-500-ok", "500x3", "503x2", "401", "400", "drop-ok", "timeout-timeout-ok", "timeout-x2"],
)
@pytest.mark.slow
async def test_retries_are_counted_at_the_server(llm_server: FakeLLMServer, actions: list[tuple[Any, ...]],
                                                 retries: int, requests: int, kind: str, needle: str | None) -> None:
    llm_server.script(*actions)
    answer, elapsed = await ask(llm_server, llm_timeout=0.3, llm_max_retries=retries)
    assert elapsed < HANG_BOUND
    assert len(llm_server.chat_requests) == requests
    assert answer.kind == kind
    if kind == "generated":
        assert answer.text == "512 MB [1]." and not answer.notices
    else:
        (notice,) = answer.notices
        assert needle in notice and notice.endswith("showing a retrieval-only answer.")


@pytest.mark.asyncio
@pytest.mark.slow
async def test_rate_limit_retry_waits_as_the_server_asks(llm_server: FakeLLMServer) -> None:
    llm_server.script(("status", 429, None, {"retry-after-ms": "400"}), ("answer", "512 MB [1]."))
    answer, _ = await ask(llm_server, llm_max_retries=1)
    first, second = llm_server.chat_requests
    assert answer.kind == "generated"
    assert second.at - first.at >= 0.35  # Retry-After honoured, not an immediate retry


# -- broken streams ----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_malformed_event_mid_stream_keeps_the_partial_answer(llm_server: FakeLLMServer) -> None:
    llm_server.script(("badsse", "Render gives 512 MB [1]"))
    answer, _ = await ask(llm_server)
    assert answer.kind == "generated" and answer.truncated
    assert answer.text == "Render gives 512 MB [1]" and answer.cited == [1]
    assert "The answer was cut off (the language model sent a reply that could not be read)." in answer.notices


@pytest.mark.asyncio
async def test_malformed_stream_before_any_text_falls_back(llm_server: FakeLLMServer) -> None:
    llm_server.script(("badsse", ""))
    answer, _ = await ask(llm_server)
    assert answer.kind == "extractive" and "[1]" in answer.text
    assert "could not be read" in answer.notices[0]


@pytest.mark.asyncio
async def test_error_event_mid_stream_is_a_cut_with_the_servers_reason_in_the_log(
        llm_server: FakeLLMServer, caplog: pytest.LogCaptureFixture) -> None:
    llm_server.script(("error_event", "Render gives 512 MB [1] and", "model overloaded"))
    answer, _ = await ask(llm_server)
    assert answer.kind == "generated" and answer.truncated
    assert answer.text == "Render gives 512 MB [1] and"
    assert "The answer was cut off (the language model reported an error)." in answer.notices
    assert "model overloaded" in caplog.text


# -- citations ---------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_citations_of_missing_sources_are_removed_and_flagged(llm_server: FakeLLMServer) -> None:
    llm_server.script(("answer", "Render has 512 MB [7]. It sleeps after 15 minutes [12][6, 99]."))
    answer, _ = await ask(llm_server)
    assert answer.kind == "generated"
    assert answer.text == "Render has 512 MB. It sleeps after 15 minutes."
    assert answer.invalid_citations == [7, 12, 6, 99] and answer.cited == []
    assert answer.unsupported
    assert "This answer cites none of the sources, so your documents do not back it." in answer.notices
    assert answer.also_retrieved == [1, 2, 3, 4, 5]


@pytest.mark.asyncio
async def test_mixed_valid_and_missing_citations_keep_the_valid_ones(llm_server: FakeLLMServer) -> None:
    llm_server.script(("answer", ["It has 512 MB [", "1, 8", "]. It sleeps [2", "0][2]."]))
    answer, _ = await ask(llm_server)
    assert answer.text == "It has 512 MB [1]. It sleeps [2]."
    assert answer.cited == [1, 2] and answer.invalid_citations == [8, 20]
    assert not answer.unsupported


# -- an outage over many messages --------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.reliability
async def test_every_message_is_answered_during_an_llm_outage_and_after_it(llm_server: FakeLLMServer) -> None:
    retries, messages = 1, 5
    llm_server.script(*[("status", 500)] * (messages * (retries + 1)))
    pipeline = ChatPipeline(FakeRetriever(), llm_server.settings(llm_max_retries=retries, llm_timeout=1.0))
    slowest = 0.0
    try:
        for i in range(messages):
            started = time.monotonic()
            _, answer = await collect(pipeline, f"{QUESTION} ({i})")
            slowest = max(slowest, time.monotonic() - started)
            assert answer.kind == "extractive" and answer.text.startswith(LABEL_LLM_DOWN)
            assert "service failed" in answer.notices[0]
        assert len(llm_server.chat_requests) == messages * (retries + 1)
        _, healed = await collect(pipeline, QUESTION)  # the script is used up: the server answers again
    finally:
        await pipeline.aclose()
    assert healed.kind == "generated" and healed.cited
    assert slowest < HANG_BOUND
