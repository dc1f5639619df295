"""The Chainlit data layer on our own tables, against a real PostgreSQL.

The point of it is feedback: a thumbs up/down must be stored with the question, the answer and
the sources that were shown. The last test goes through the real message handler, so what gets
rated is exactly what the chat produced.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest.mock import AsyncMock

import chainlit as cl
import chainlit.data as cl_data
import psycopg
import pytest
from chainlit.chat_context import chat_context
from chainlit.config import FILES_DIRECTORY
from chainlit.context import ChainlitContext, context_var
from chainlit.session import WebsocketSession
from chainlit.types import Feedback, Pagination, ThreadFilter
from chainlit.utils import utc_now
from psycopg.rows import dict_row

from assistant.app import ChatApp
from assistant.retrieval import open_retriever
from assistant.retrieval.errors import DatabaseError
from assistant.retrieval.store import Store
from assistant.ui.datalayer import CHAT_SCHEMA_STEPS, ChatDataLayer, ensure_chat_schema
from assistant.ui.runtime import Runtime
from tests.conftest import make_settings


@pytest.fixture
def store(database_url: str, tmp_path: Path) -> Iterator[Store]:
    s = Store.open(make_settings(database_url=database_url, data_dir=tmp_path), announce=False)
    yield s
    s.close()




def open_session(made: list[WebsocketSession], *, first_interaction: bool = True) -> WebsocketSession:
    session = WebsocketSession(id=str(uuid.uuid4()), socket_id=str(uuid.uuid4()), emit=AsyncMock(),
                               emit_call=AsyncMock(), user_env={}, client_type="webapp")
    FILES_DIRECTORY.mkdir(exist_ok=True)  # element files go here (another Chainlit process may have removed it)
    session.has_first_interaction = first_interaction
    context_var.set(ChainlitContext(session))
    made.append(session)
    return session


def rows(store: Store, query: str, *args: Any) -> list[dict[str, Any]]:
    with store.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, args).fetchall()  # type: ignore[arg-type]


def step(thread: str, kind: str, output: str, **extra: Any) -> dict[str, Any]:
    time.sleep(0.002)  # distinct, ordered timestamps
    return {"id": str(uuid.uuid4()), "threadId": thread, "type": kind, "name": "x", "output": output,
            "createdAt": utc_now(), **extra}


SOURCES = [{"n": 1, "cited": True, "title": "Deploying to Render", "text": "Wait for the first deploy.",
            "chunk_id": 7, "source": "/docs/deploy-render.md"}]


def test_chat_schema_is_created_once(store: Store) -> None:
    assert ensure_chat_schema(store) == len(CHAT_SCHEMA_STEPS)
    assert ensure_chat_schema(store) == 0
    names = {r["tablename"] for r in rows(store, "SELECT tablename FROM pg_tables WHERE tablename LIKE 'chat_%%'")}
    assert names == {"chat_users", "chat_threads", "chat_steps", "chat_elements", "chat_feedback"}
    [version] = rows(store, "SELECT version FROM schema_migrations WHERE namespace = 'chat'")
    assert version["version"] == len(CHAT_SCHEMA_STEPS)


async def test_feedback_is_stored_with_question_answer_and_sources(store: Store, sessions: list) -> None:
    session = open_session(sessions)
    dl = ChatDataLayer(lambda: store)
    thread = session.thread_id
    await dl.update_thread(thread, name="How do I deploy?", metadata={"client": "webapp"})
    question = step(thread, "user_message", "How do I deploy?")
    answer = step(thread, "assistant_message", "Wait for the first deploy [1].\n\n**Sources:** [1] ...",
                  metadata={"question": "How do I deploy?", "answer": "Wait for the first deploy [1].",
                            "sources": SOURCES})
    await dl.create_step(question)
    await dl.create_step(answer)

    feedback_id = await dl.upsert_feedback(Feedback(forId=answer["id"], value=0, comment="too short",
                                                    threadId=thread))
    [row] = rows(store, "SELECT * FROM chat_feedback")
    assert row["id"] == feedback_id and row["value"] == 0 and row["comment"] == "too short"
    assert row["question"] == "How do I deploy?" and row["answer"] == "Wait for the first deploy [1]."
    assert row["sources"] == SOURCES and row["thread_id"] == thread

    again = await dl.upsert_feedback(Feedback(id=feedback_id, forId=answer["id"], value=1, comment=None))
    [row] = rows(store, "SELECT * FROM chat_feedback")
    assert again == feedback_id and row["value"] == 1 and row["comment"] is None
    assert row["sources"] == SOURCES  # the snapshot is kept

    loaded = await dl.get_thread(thread)
    assert loaded is not None and loaded["name"] == "How do I deploy?" and loaded["metadata"] == {"client": "webapp"}
    by_id = {s["id"]: s for s in loaded["steps"]}
    assert by_id[answer["id"]]["feedback"] == {"id": feedback_id, "forId": answer["id"], "value": 1, "comment": None}
    assert by_id[question["id"]]["output"] == "How do I deploy?" and "feedback" not in by_id[question["id"]]

    assert await dl.delete_feedback(feedback_id) is True
    assert await dl.delete_feedback(feedback_id) is False
    assert rows(store, "SELECT * FROM chat_feedback") == []


async def test_feedback_without_metadata_uses_the_preceding_question(store: Store, sessions: list) -> None:
    session = open_session(sessions)
    dl = ChatDataLayer(lambda: store)
    thread = session.thread_id
    await dl.create_step(step(thread, "user_message", "first question"))
    await dl.create_step(step(thread, "user_message", "second question"))
    plain = step(thread, "assistant_message", "an answer")
    await dl.create_step(plain)
    await dl.upsert_feedback(Feedback(forId=plain["id"], value=1))
    [row] = rows(store, "SELECT question, answer, sources FROM chat_feedback")
    assert row == {"question": "second question", "answer": "an answer", "sources": []}


async def test_rating_the_run_finds_its_answer(store: Store, sessions: list) -> None:
    """The full-page UI puts the thumbs on Chainlit's on_message run, not on the answer message."""
    session = open_session(sessions)
    dl = ChatDataLayer(lambda: store)
    thread = session.thread_id
    run = step(thread, "run", "", input="How do I deploy?", name="on_message")
    await dl.create_step(step(thread, "user_message", "How do I deploy?"))
    await dl.create_step(run)
    await dl.create_step(step(thread, "retrieval", "search table", parentId=run["id"]))
    await dl.create_step(step(thread, "assistant_message", "Wait [1].\n\n**Sources:** ...", parentId=run["id"],
                              metadata={"question": "How do I deploy?", "answer": "Wait [1].", "sources": SOURCES}))
    await dl.upsert_feedback(Feedback(forId=run["id"], value=1, threadId=thread))
    [row] = rows(store, "SELECT step_id, question, answer, sources FROM chat_feedback")
    assert row == {"step_id": run["id"], "question": "How do I deploy?", "answer": "Wait [1].", "sources": SOURCES}


async def test_writes_wait_for_the_first_user_message(store: Store, sessions: list) -> None:
    session = open_session(sessions, first_interaction=False)
    dl = ChatDataLayer(lambda: store)
    ensure_chat_schema(store)
    await dl.create_step(step(session.thread_id, "assistant_message", "hello"))
    assert rows(store, "SELECT id FROM chat_steps") == []  # a visitor who never asks leaves no thread behind
    session.has_first_interaction = True
    await session.flush_method_queue()
    assert len(rows(store, "SELECT id FROM chat_steps")) == 1


async def test_threads_elements_and_users(store: Store, sessions: list) -> None:
    session = open_session(sessions)
    dl = ChatDataLayer(lambda: store)
    user = await dl.create_user(cl.User(identifier="ada@example.com", metadata={"role": "admin"}))
    assert user is not None and (await dl.get_user("ada@example.com")).id == user.id  # type: ignore[union-attr]
    assert await dl.get_user("nobody") is None
    threads = [str(uuid.uuid4()) for _ in range(3)]
    for i, t in enumerate(threads):
        await dl.update_thread(t, name=f"thread {i}", user_id=user.id)
        await asyncio.sleep(0.01)
    assert await dl.get_thread_author(threads[0]) == "ada@example.com"
    page = await dl.list_threads(Pagination(first=2), ThreadFilter(userId=user.id))
    assert [t["name"] for t in page.data] == ["thread 2", "thread 1"] and page.pageInfo.hasNextPage
    rest = await dl.list_threads(Pagination(first=2, cursor=page.pageInfo.endCursor), ThreadFilter(userId=user.id))
    assert [t["name"] for t in rest.data] == ["thread 0"] and not rest.pageInfo.hasNextPage
    found = await dl.list_threads(Pagination(first=5), ThreadFilter(userId=user.id, search="thread 1"))
    assert [t["name"] for t in found.data] == ["thread 1"]

    element = cl.Text(name="[1]", content="passage", display="side", for_id="s1", thread_id=threads[0])
    element.chainlit_key = "key-1"
    await dl.create_element(element)
    got = await dl.get_element(threads[0], element.id)
    assert got is not None and got["name"] == "[1]" and got["display"] == "side" and got["forId"] == "s1"
    await dl.delete_thread(threads[0])
    assert await dl.get_thread(threads[0]) is None and await dl.get_element(threads[0], element.id) is None
    assert session.thread_id not in threads


async def test_database_down_is_a_warning_for_background_writes_and_an_error_for_feedback(sessions: list) -> None:
    session = open_session(sessions)

    def down() -> Store:
        raise DatabaseError("Cannot reach PostgreSQL at db:5432 (connection refused)")

    dl = ChatDataLayer(down)
    await dl.create_step(step(session.thread_id, "assistant_message", "x"))  # logged, not raised
    await dl.update_thread(session.thread_id, name="x")
    with pytest.raises(DatabaseError):
        await dl.upsert_feedback(Feedback(forId="x", value=1))


@pytest.mark.slow
async def test_rating_a_real_answer(sample_database: str, store: Store, tmp_path: Path, sessions: list,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The chat answers (search on the sample corpus); the thumbs-down lands with what was shown."""
    settings = make_settings(database_url=sample_database, data_dir=tmp_path / "app")
    retriever = open_retriever(settings, announce=False, sample_docs=False)
    dl = ChatDataLayer(lambda: store)  # chat tables in their own fresh database
    monkeypatch.setattr(cl_data, "_data_layer", dl)
    monkeypatch.setattr(cl_data, "_data_layer_initialized", True)
    app = ChatApp(Runtime(settings, opener=lambda s: retriever))
    try:
        session = open_session(sessions)
        question = "How do I deploy on Render?"
        message = cl.Message(content=question, type="user_message", author="User")
        chat_context.add(message)
        await message.send()
        await app.on_message(message)
        final = [c.args[1] for c in session.emit.call_args_list
                 if c.args[0] == "new_message" and c.args[1].get("type") == "assistant_message"][-1]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not rows(store, "SELECT 1 FROM chat_steps WHERE id = %s", final["id"]):
            await asyncio.sleep(0.05)  # Chainlit saves steps in background tasks

        await dl.upsert_feedback(Feedback(forId=final["id"], value=0, comment="missing the blueprint step"))
        [row] = rows(store, "SELECT * FROM chat_feedback")
        assert row["question"] == question and row["value"] == 0
        assert row["answer"] == final["metadata"]["answer"] and row["answer"] in final["output"]
        assert [s["n"] for s in row["sources"]] == [s["n"] for s in final["metadata"]["sources"]]
        assert all(s["title"] and s["text"] for s in row["sources"])
        kinds = {r["type"] for r in rows(store, "SELECT type FROM chat_steps WHERE thread_id = %s", session.thread_id)}
        assert {"user_message", "assistant_message", "retrieval"} <= kinds
    finally:
        retriever.store.close()


def test_chat_tables_do_not_touch_retrieval_tables(store: Store) -> None:
    ensure_chat_schema(store)
    with psycopg.connect(store.location.url) as conn:
        tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"documents", "chunks", "assistant_meta", "schema_migrations"} <= tables
