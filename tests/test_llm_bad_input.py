"""Bad LLM output and bad LLM servers, through the real openai client against the loopback fake.

Issue 10's list: an answer with unbalanced fences, HTML, `[0]`, `[-1]`, `[999999999999]`,
citations split across stream chunks, a stream that stops after the role chunk, a 200 with no
events, a context overflow (llama.cpp's way: HTTP 200 and an empty stream). Each case checks what
the reader gets (what was received, plus one plain-language notice, rendered by the same
`answer_markdown` the chat uses) and that the operator detail is in the server log.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from assistant.chat import Answer, ChatPipeline
from assistant.chat.extractive import LABEL_LLM_DOWN
from assistant.chat.llm import CONTEXT_HINT
from assistant.ui.sources import answer_markdown
from tests.fakes.llm_server import MODEL, FakeLLMServer
from tests.fakes.llm_server import llm_server as llm_server_fixture
from tests.test_chat_pipeline import FakeRetriever, collect

llm_server = llm_server_fixture  # the fixture, found by pytest under this name

QUESTION = "How much RAM does the free Render service get?"
LONG_TURN = "Tell me everything about deploying this assistant on a small host with little memory. " * 30


async def ask(server: FakeLLMServer, question: str = QUESTION, history: list[dict] | None = None,
              check: bool = False, **changes: Any) -> tuple[Answer, ChatPipeline]:
    pipeline = ChatPipeline(FakeRetriever(), server.settings(**changes))
    if check:
        pipeline.check_llm()
    try:
        _, answer = await collect(pipeline, question, history)
    finally:
        await pipeline.aclose()
    return answer, pipeline


def rendered(answer: Answer) -> str:
    return answer_markdown(answer, llm_enabled=True)


def plain(notice: str) -> None:
    """A notice for a reader: one line, no endpoint, no setting names, no stack."""
    assert "\n" not in notice and "127.0.0.1" not in notice and "http" not in notice
    assert not any(name in notice for name in ("OPENAI_", "LLM_", "Traceback", "Error:"))


# -- what the model wrote ----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_unclosed_fence_is_closed_before_the_footer(llm_server: FakeLLMServer) -> None:
    llm_server.script(("answer", "Install it [1]:\n\n```bash\npip install doc-assistant\n"))
    answer, _ = await ask(llm_server)
    assert answer.text.rstrip() == "Install it [1]:\n\n```bash\npip install doc-assistant"
    md = rendered(answer)
    body, footer = md.split("\n\n**Sources:**", 1)
    assert body.endswith("```bash\npip install doc-assistant\n```")  # closed: the footer is Markdown again
    assert "Also retrieved" in footer and "```" not in footer


@pytest.mark.asyncio
async def test_html_in_an_answer_shows_as_written(llm_server: FakeLLMServer) -> None:
    llm_server.script(("answer", "Wrap it in <details> [1]; never <script>alert(1)</script>. Code: `<b>`."))
    answer, _ = await ask(llm_server)
    assert answer.text == "Wrap it in <details> [1]; never <script>alert(1)</script>. Code: `<b>`."
    md = rendered(answer)
    assert "\\<details>" in md and "\\<script>alert(1)\\</script>" in md
    assert "`<b>`" in md  # code spans show their text as is already


@pytest.mark.asyncio
@pytest.mark.parametrize("bogus", ["[0]", "[-1]", "[999999999999]"])
async def test_bogus_citation_numbers_are_removed(llm_server: FakeLLMServer, bogus: str) -> None:
    llm_server.script(("answer", f"Render gives 512 MB {bogus}. It sleeps after 15 minutes [1]."))
    answer, _ = await ask(llm_server)
    assert answer.text == "Render gives 512 MB. It sleeps after 15 minutes [1]."
    assert answer.cited == [1] and len(answer.invalid_citations) == 1
    assert bogus not in rendered(answer)


@pytest.mark.asyncio
async def test_only_bogus_citations_mean_an_unsupported_answer(llm_server: FakeLLMServer) -> None:
    llm_server.script(("answer", "Render gives **512 MB [0]** and \"sleeps [-1]\" `[999999999999]`."))
    answer, _ = await ask(llm_server)
    assert answer.text == 'Render gives **512 MB** and "sleeps".'
    assert answer.unsupported and answer.cited == []
    assert answer.notices == ["This answer cites none of the sources, so your documents do not back it."]


@pytest.mark.asyncio
async def test_citations_split_across_chunks_are_joined(llm_server: FakeLLMServer) -> None:
    llm_server.script(("answer", ["Render gives 512 MB [", "1", "]", " and sleeps [", "2", ",", " 9", "]."]))
    answer, _ = await ask(llm_server)
    assert answer.text == "Render gives 512 MB [1] and sleeps [2]."
    assert answer.cited == [1, 2] and answer.invalid_citations == [9]


@pytest.mark.asyncio
async def test_also_retrieved_lists_only_sources_the_model_was_given(llm_server: FakeLLMServer) -> None:
    # A window so small that only the best source fits: the other four were never sent.
    llm_server.script(("answer", "Render gives 512 MB [1]."))
    answer, _ = await ask(llm_server, llm_context_tokens=1024, llm_max_answer_tokens=600)
    prompt = llm_server.chat_requests[0].prompt
    sent = prompt.count("<source id=")
    assert 1 <= sent < 5
    assert answer.also_retrieved == list(range(2, sent + 1))
    assert all(f"[{n}]" not in rendered(answer) for n in range(sent + 1, 6))


# -- what the server did -----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_stream_that_stops_after_the_role_chunk(llm_server: FakeLLMServer,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    llm_server.script(("role_only",))
    answer, _ = await ask(llm_server)
    assert answer.kind == "extractive" and answer.text.startswith(LABEL_LLM_DOWN)
    (notice,) = answer.notices
    assert notice == "The connection to the language model broke off; showing a retrieval-only answer."
    plain(notice)
    assert "ended mid-answer" in caplog.text and llm_server.base_url in caplog.text


@pytest.mark.asyncio
async def test_stream_cut_mid_answer_keeps_the_text_and_says_it_broke_off(llm_server: FakeLLMServer,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    llm_server.script(("cut", "Render gives 512 MB [1] and then"))
    answer, _ = await ask(llm_server)
    assert answer.kind == "generated" and answer.truncated and answer.text == "Render gives 512 MB [1] and then"
    assert answer.notices == ["The answer was cut off (the connection to the language model broke off)."]
    assert "RemoteProtocolError" in caplog.text  # httpx2's, wrapped by openai 3.x in APIConnectionError


@pytest.mark.asyncio
async def test_200_with_no_events_is_diagnosed_then_reported_as_empty(llm_server: FakeLLMServer,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    llm_server.script(("empty_stream",))
    answer, _ = await ask(llm_server)
    assert answer.kind == "extractive" and "[1]" in answer.text
    (notice,) = answer.notices
    assert notice == "The language model returned an empty answer; showing a retrieval-only answer."
    plain(notice)
    # The diagnosis: the same prompt once more, not streamed, one token; it was accepted.
    stream, probe = llm_server.chat_requests
    assert stream.stream and not probe.stream and probe.body["max_tokens"] == 1
    assert "HTTP 200 with no events at all" in caplog.text


@pytest.mark.asyncio
async def test_a_stream_with_events_but_no_text_is_not_diagnosed(llm_server: FakeLLMServer,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    llm_server.script(("answer", ["", " "]))  # role chunk, blank content, finish_reason "stop", [DONE]
    answer, _ = await ask(llm_server)
    assert answer.kind == "extractive"
    assert answer.notices == ["The language model returned an empty answer; showing a retrieval-only answer."]
    assert len(llm_server.chat_requests) == 1  # the model spoke, it just said nothing: no second request
    assert "answer held only blanks" in caplog.text


@pytest.mark.asyncio
async def test_context_overflow_is_retried_within_the_servers_window(llm_server: FakeLLMServer,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    llm_server.n_ctx = 1024  # LLM_CONTEXT_TOKENS says 8192: the operator's mistake
    llm_server.script(("answer", "Render gives 512 MB [1]."))
    history = [{"role": "user", "content": LONG_TURN * 2}, {"role": "assistant", "content": "It fits in 512 MB."}]
    with caplog.at_level(logging.INFO):
        answer, pipeline = await ask(llm_server, QUESTION, history)
    assert answer.kind == "generated" and answer.text == "Render gives 512 MB [1]." and not answer.notices
    first, probe, retry = llm_server.chat_requests
    assert first.stream and not probe.stream and retry.stream
    assert len(retry.prompt) < len(first.prompt)
    assert pipeline.context_tokens == 1024
    assert "set LLM_CONTEXT_TOKENS=1024" in caplog.text


@pytest.mark.asyncio
async def test_context_overflow_that_cannot_be_fixed_gives_a_plain_hint(llm_server: FakeLLMServer,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    llm_server.n_ctx = 120  # smaller than any prompt of ours
    answer, _ = await ask(llm_server)
    assert answer.kind == "extractive" and "[1]" in answer.text
    (notice,) = answer.notices
    assert notice == f"{CONTEXT_HINT}; showing a retrieval-only answer."
    plain(notice)
    assert "maximum context length is 120 tokens" in caplog.text


@pytest.mark.asyncio
async def test_overflow_rendered_for_the_reader(llm_server: FakeLLMServer) -> None:
    llm_server.n_ctx = 120
    answer, _ = await ask(llm_server)
    md = rendered(answer)
    assert md.count("⚠️") == 1 and "too long for the language model" in md


# -- the start-up check and the server's tokenizer ---------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("tokenizer", [True, False], ids=["server-tokenizer", "local-count"])
async def test_server_tokenizer_keeps_a_prompt_inside_a_tight_window(llm_server: FakeLLMServer, tokenizer: bool,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    """The fake model makes ~2x the tokens tiktoken counts: only its own tokenizer gets the budget right
    the first time; without it the prompt overflows and the retry has to fix it."""
    llm_server.n_ctx = 1000
    llm_server.token_factor = 2.0
    llm_server.tokenizer = tokenizer
    llm_server.script(("answer", "Render gives 512 MB [1]."))
    with caplog.at_level(logging.INFO):
        answer, pipeline = await ask(llm_server, check=True, llm_context_tokens=1024, llm_max_answer_tokens=300)
    assert answer.kind == "generated" and answer.text == "Render gives 512 MB [1]." and not answer.notices
    if tokenizer:
        assert len(llm_server.chat_requests) == 1  # right the first time: no overflow, no retry
        assert len(llm_server.tokenize_requests) == 2  # the calibration at start and the check of this prompt
        assert pipeline.counter.calibrated and pipeline.counter.scale > 1.8
        assert "prompt budgets use the tokenizer of" in caplog.text
    else:
        first, probe, retry = llm_server.chat_requests
        assert first.stream and not probe.stream and retry.stream and "set LLM_CONTEXT_TOKENS=1000" in caplog.text
        assert "exposes no tokenizer" in caplog.text


@pytest.mark.asyncio
async def test_model_check_logs_a_name_the_server_does_not_list(llm_server: FakeLLMServer,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    pipeline = ChatPipeline(FakeRetriever(), llm_server.settings(llm_model="gpt-4o-mni"))
    try:
        with caplog.at_level(logging.INFO):
            pipeline.check_llm()
    finally:
        await pipeline.aclose()
    assert "LLM_MODEL='gpt-4o-mni' is not among the models" in caplog.text and repr(MODEL) in caplog.text
    assert pipeline.llm is not None and pipeline.llm.server is not None
    assert pipeline.llm.server.model_listed is False


@pytest.mark.asyncio
async def test_model_check_without_a_model_list_or_a_server(llm_server: FakeLLMServer,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    llm_server.models = None
    with caplog.at_level(logging.INFO):
        pipeline = ChatPipeline(FakeRetriever(), llm_server.settings())
        pipeline.check_llm()
        await pipeline.aclose()
        assert "has no model list" in caplog.text
        down = ChatPipeline(FakeRetriever(), llm_server.settings(openai_base_url="http://127.0.0.1:9/v1"))
        down.check_llm()
        await down.aclose()
    assert "LLM check: could not reach http://127.0.0.1:9/v1" in caplog.text
