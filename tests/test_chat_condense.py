"""Follow-up questions: rule-based rewriting and LLM condensing (through the real client)."""

from __future__ import annotations

import pytest

from assistant.chat.condense import condense_question, looks_like_follow_up, rule_based_rewrite, same_question
from assistant.chat.llm import LLMClient, LLMError
from assistant.chat.llm_tokens import get_counter
from assistant.chat.prompts import load_prompts
from tests.fakes.llm_server import FakeLLMServer
from tests.fakes.llm_server import llm_server as llm_server_fixture

llm_server = llm_server_fixture  # the fixture, found by pytest under this name

HISTORY = [
    {"role": "user", "content": "How do I enable two-factor authentication?"},
    {"role": "assistant", "content": "Open Settings > Security and turn on 2FA [1]."},
]


def test_follow_up_detection() -> None:
    assert looks_like_follow_up("and how do I undo that?")
    assert looks_like_follow_up("What about Windows?")
    assert looks_like_follow_up("Does it work offline?")
    assert looks_like_follow_up("Why?")
    assert not looks_like_follow_up("How do I rotate the database password on Render?")


def test_rule_based_rewrite_adds_the_previous_subject() -> None:
    query = rule_based_rewrite("and how do I undo that?", HISTORY)
    assert query == "How do I undo enable two-factor authentication?"  # the subject where "that" stood


def test_rule_based_rewrite_appends_the_subject_when_nothing_points_back() -> None:
    query = rule_based_rewrite("what about Windows?", HISTORY)
    assert query == "What about Windows? (enable two-factor authentication)"


def test_rule_based_rewrite_keeps_the_topic_of_a_render_conversation() -> None:
    history = [{"role": "user", "content": "How do I deploy on Render?"}, {"role": "assistant", "content": "..."}]
    query = rule_based_rewrite("and how much memory does it need?", history)
    assert query == "How much memory does deploy Render need?"


def test_rule_based_rewrite_keeps_standalone_questions() -> None:
    q = "How do I rotate the database password on Render?"
    assert rule_based_rewrite(q, HISTORY) == q
    assert rule_based_rewrite("and how do I undo that?", []) == "and how do I undo that?"


def test_rule_based_rewrite_reaches_back_past_a_follow_up() -> None:
    history = [*HISTORY, {"role": "user", "content": "and on mobile?"}, {"role": "assistant", "content": "Same."}]
    query = rule_based_rewrite("what about that?", history)
    assert "mobile" in query and "two-factor" in query


def test_same_question_ignores_case_and_punctuation() -> None:
    assert same_question("How do I install it?", "how do i install it")
    assert not same_question("How do I install it?", "How do I install Doc Assistant?")


async def _condense(server: FakeLLMServer, question: str, history: list[dict]) -> str:
    settings = server.settings()
    llm = LLMClient(settings)
    try:
        return await condense_question(question, history, llm=llm, prompts=load_prompts(),
                                       counter=get_counter(settings.llm_model), context_tokens=8192)
    finally:
        await llm.aclose()


@pytest.mark.asyncio
async def test_llm_condense_uses_the_model_reply(llm_server: FakeLLMServer) -> None:
    llm_server.script(("condense", 'Standalone question: "How do I disable two-factor authentication?"'))
    query = await _condense(llm_server, "and how do I undo that?", HISTORY)
    assert query == "How do I disable two-factor authentication?"
    (req,) = llm_server.chat_requests
    assert not req.stream
    assert "User: How do I enable two-factor authentication?" in req.prompt
    assert "Follow-up question: and how do I undo that?" in req.prompt


@pytest.mark.asyncio
async def test_llm_condense_keeps_a_standalone_question(llm_server: FakeLLMServer) -> None:
    # The fake's default echoes the follow-up unchanged, as a model should for standalone questions.
    q = "How do I rotate the database password?"
    assert await _condense(llm_server, q, HISTORY) == q


@pytest.mark.asyncio
async def test_llm_condense_ignores_a_rambling_reply(llm_server: FakeLLMServer) -> None:
    llm_server.script(("condense", "Sure! " + "Here is a long answer instead of a question. " * 30))
    query = await _condense(llm_server, "and how do I undo that?", HISTORY)
    assert query == rule_based_rewrite("and how do I undo that?", HISTORY)


@pytest.mark.asyncio
async def test_no_history_means_no_llm_call(llm_server: FakeLLMServer) -> None:
    assert await _condense(llm_server, "and that?", []) == "and that?"
    assert llm_server.chat_requests == []


@pytest.mark.asyncio
async def test_llm_condense_error_is_raised_for_the_pipeline(llm_server: FakeLLMServer) -> None:
    llm_server.script(("status", 500))
    with pytest.raises(LLMError, match="service failed") as info:
        await _condense(llm_server, "and how do I undo that?", HISTORY)
    assert "HTTP 500" in info.value.detail
