"""The chat side of uploads and `/documents`, through the app's handlers without a browser.

Like tests/test_app_handlers.py: a real `WebsocketSession` with a recording emitter is the current
Chainlit context and the handlers are awaited as plain functions. An attached file is what
Chainlit hands `on_message`: a `cl.File` element whose `path` is the saved upload. The database
(fresh per test) and the embedder are real.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest.mock import AsyncMock

import chainlit as cl
import pytest
from chainlit.chat_context import chat_context
from chainlit.config import FILES_DIRECTORY
from chainlit.context import ChainlitContext, context_var
from chainlit.session import WebsocketSession

from assistant.app import ChatApp
from assistant.config import Settings
from assistant.retrieval import open_retriever
from assistant.retrieval.search import Retriever
from assistant.ui import documents, upload_chat, uploads
from assistant.ui.runtime import Runtime
from tests.test_app_handlers import (  # noqa: F401  (no_chainlit_data_layer: an autouse fixture)
    PgProxy,
    answers,
    app,
    emitted,
    errors,
    messages,
    no_chainlit_data_layer,
)
from tests.test_uploads import GUIDE

pytestmark = pytest.mark.slow  # every test indexes real files into a fresh database through the handlers

USERS = (("alice", "unused-hash"), ("bob", "unused-hash"))


@pytest.fixture
def retriever(settings: Settings) -> Iterator[Retriever]:
    r = open_retriever(settings, announce=False, sample_docs=False)
    yield r
    r.store.close()


@pytest.fixture
def use_runtime(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Make the handlers under test (`app`) run on `rt`."""
    def use(rt: Runtime) -> Runtime:
        monkeypatch.setattr(sys.modules[__name__], "app", ChatApp(rt))
        return rt

    return use


def runtime_with(retriever: Retriever, **changes: Any) -> Runtime:
    settings = dataclasses.replace(retriever.store.settings, **changes)
    return Runtime(settings, opener=lambda s: retriever)


async def open_session(made: list[WebsocketSession], user: str | None = None) -> WebsocketSession:
    session = WebsocketSession(
        id=str(uuid.uuid4()), socket_id=str(uuid.uuid4()), emit=AsyncMock(), emit_call=AsyncMock(),
        user_env={}, client_type="webapp", user=cl.User(identifier=user) if user else None,
        environ={"HTTP_HOST": "assistant.test:8000", "wsgi.url_scheme": "http"},
    )
    FILES_DIRECTORY.mkdir(exist_ok=True)
    session.has_first_interaction = True
    context_var.set(ChainlitContext(session))
    made.append(session)
    return session


def attach(tmp_path: Path, name: str, data: bytes | str, mime: str = "text/markdown") -> cl.File:
    """A file as Chainlit saves an upload: a uuid name in the session folder, the real name apart."""
    path = tmp_path / "session-files" / (uuid.uuid4().hex + Path(name).suffix)
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return cl.File(name=name, path=str(path), mime=mime)


async def send(text: str, files: list[cl.File] = (), command: str | None = None) -> cl.Message:  # type: ignore[assignment]
    message = cl.Message(content=text, type="user_message", author="User", elements=list(files))
    message.command = command
    chat_context.add(message)
    await app.on_message(message)
    return message


def status_lines(session: WebsocketSession) -> list[str]:
    """Every version of every non-error assistant message, in order (progress updates included)."""
    return [d["output"] for e, d in emitted(session)
            if e in ("new_message", "update_message") and d.get("type") == "assistant_message" and not d.get("isError")]


def actions(session: WebsocketSession) -> list[dict]:
    return [d for e, d in emitted(session) if e == "action"]


def action_from(data: dict) -> cl.Action:
    return cl.Action(name=data["name"], payload=data["payload"], label=data["label"], id=data["id"],
                     forId=data["forId"])


# -- uploading ------------------------------------------------------------------------------------


async def test_a_dropped_file_is_indexed_with_progress_and_answers_at_once(
        retriever: Retriever, use_runtime: Any, sessions: list, tmp_path: Path) -> None:
    rt = use_runtime(runtime_with(retriever))
    session = await open_session(sessions)
    await send("How many gigawatts does the flux capacitor need?", [attach(tmp_path, "zorblax.md", GUIDE)])
    lines = status_lines(session)
    assert any("Reading **zorblax\\.md**" in line for line in lines), lines
    assert any(line.startswith("Added **zorblax\\.md**") and "You can ask about it now" in line for line in lines)
    assert errors(session) == []
    [final] = answers(session)
    assert "42 gigawatts" in final["output"]
    step = messages(session, "retrieval")[-1]
    assert "the attached file" in step["output"]  # the question searched the new file only
    [source] = final["metadata"]["sources"][:1]
    assert source["url"] is None  # a local file: no web address of its own...
    assert source["original_url"] == f"http://assistant.test:8000/documents/{source['document_id']}"  # ...but this
    assert rt.settings.uploads_dir.joinpath("zorblax.md").is_file()


async def test_a_file_without_a_question_is_indexed_and_a_later_question_finds_it(
        retriever: Retriever, use_runtime: Any, sessions: list, tmp_path: Path) -> None:
    use_runtime(runtime_with(retriever))
    session = await open_session(sessions)
    await send("", [attach(tmp_path, "../../x.md", GUIDE)])
    assert answers(session) == [] and errors(session) == []
    assert any("Added **x\\.md**" in line for line in status_lines(session))
    await send("Where do I keep the Zorblax?")
    assert "12 degrees" in answers(session)[0]["output"]


@pytest.mark.parametrize("name,data,needle", [
    ("report.docx", b"PK\x03\x04", ".docx files can't be indexed"),
    ("empty.md", b"", "empty.md is empty"),
    ("scan.pdf", b"%PDF-1.4 nothing", "scan.pdf: corrupt or unreadable PDF"),
])
async def test_bad_files_get_one_line_each_and_the_chat_goes_on(
        name: str, data: bytes, needle: str, retriever: Retriever, use_runtime: Any, sessions: list,
        tmp_path: Path) -> None:
    rt = use_runtime(runtime_with(retriever))
    session = await open_session(sessions)
    await send("What is in it?", [attach(tmp_path, name, data), attach(tmp_path, "good.md", GUIDE)])
    errs = errors(session)
    assert len(errs) == 1 and needle in errs[0] and "\n" not in errs[0], errs
    assert any("Added **good\\.md**" in line for line in status_lines(session))
    assert len(answers(session)) == 1  # answered from the file that did go in
    assert sorted(p.name for p in rt.settings.uploads_dir.iterdir() if p.is_file()) == ["good.md"]


async def test_an_over_size_file_and_too_many_files(retriever: Retriever, use_runtime: Any, sessions: list,
                                                    tmp_path: Path) -> None:
    use_runtime(runtime_with(retriever, upload_max_mb=1, upload_max_files=2))
    session = await open_session(sessions)
    big = attach(tmp_path, "big.txt", "word " * 300_000, mime="text/plain")
    await send("", [big, attach(tmp_path, "a.md", GUIDE), attach(tmp_path, "b.md", GUIDE)])
    errs = errors(session)
    assert errs[0] == "3 files attached; at most 2 are added per message, so the first 2 are."
    assert errs[1] == "big.txt is 1.4 MB; the limit is 1 MB per file"
    assert any("Added **a\\.md**" in line for line in status_lines(session))
    assert not any("b\\.md" in line for line in status_lines(session))


async def test_a_non_admin_cannot_upload(retriever: Retriever, use_runtime: Any, sessions: list,
                                         tmp_path: Path) -> None:
    rt = use_runtime(runtime_with(retriever, users=USERS, admins=("alice",)))
    session = await open_session(sessions, user="bob")
    await send("What is this?", [attach(tmp_path, "zorblax.md", GUIDE)])
    assert errors(session) == [uploads.NOT_ALLOWED] and answers(session) == []
    assert retriever.store.document_count() == 0 and not rt.settings.uploads_dir.exists()
    admin = await open_session(sessions, user="alice")
    await send("", [attach(tmp_path, "zorblax.md", GUIDE)])
    assert errors(admin) == [] and retriever.store.document_count() == 1


async def test_uploads_off_in_an_open_chat(retriever: Retriever, use_runtime: Any, sessions: list,
                                          tmp_path: Path) -> None:
    use_runtime(runtime_with(retriever, allow_uploads=False))
    session = await open_session(sessions)
    await send("", [attach(tmp_path, "zorblax.md", GUIDE)])
    assert errors(session) == [uploads.UPLOADS_OFF] and retriever.store.document_count() == 0


async def test_two_uploads_at_once_from_two_chats(retriever: Retriever, use_runtime: Any, sessions: list,
                                                  tmp_path: Path) -> None:
    use_runtime(runtime_with(retriever))
    first = await open_session(sessions)
    second = await open_session(sessions)

    async def upload_in(session: WebsocketSession, name: str, text: str) -> None:
        context_var.set(ChainlitContext(session))
        await send("", [attach(tmp_path, name, text)])

    await asyncio.gather(upload_in(first, "one.md", GUIDE),
                         upload_in(second, "two.md", GUIDE.replace("Zorblax", "Quuxotron")))
    assert errors(first) == errors(second) == []
    assert retriever.store.document_count() == 2
    assert any("Added **one\\.md**" in line for line in status_lines(first))
    assert any("Added **two\\.md**" in line for line in status_lines(second))


async def test_an_upload_while_the_database_is_down_is_one_line(create_database: Any, use_runtime: Any,
                                                                sessions: list, tmp_path: Path) -> None:
    proxy = PgProxy(create_database())
    proxy.start()
    settings = Settings(database_url=proxy.url, data_dir=tmp_path / "data", sample_docs=False, db_connect_timeout=1)
    r = open_retriever(settings, announce=False, sample_docs=False)
    use_runtime(Runtime(settings, opener=lambda s: r))
    try:
        session = await open_session(sessions)
        proxy.stop()
        await send("What does it say?", [attach(tmp_path, "zorblax.md", GUIDE)])
        assert errors(session) == [upload_chat.DB_DOWN.format(name="zorblax.md")]
        assert answers(session) == []
        assert [p for p in settings.uploads_dir.rglob("*") if p.is_file()] == []
        assert not any("Added" in line for line in status_lines(session))  # the progress line was taken back
    finally:
        proxy.stop()
        r.store.close()


# -- /documents ------------------------------------------------------------------------------------


async def test_documents_lists_counts_and_an_admin_removes_one_with_a_confirmation(
        retriever: Retriever, use_runtime: Any, sessions: list, tmp_path: Path) -> None:
    rt = use_runtime(runtime_with(retriever))
    session = await open_session(sessions)
    await send("", [attach(tmp_path, "zorblax.md", GUIDE), attach(tmp_path, "other.md", GUIDE.replace("Zorblax", "Q"))])
    await app.chat_start()
    [cmds] = [d for e, d in emitted(session) if e == "set_commands"]
    assert cmds[0]["id"] == "documents"

    await send("", command="documents")
    listing = status_lines(session)[-1]
    assert "**Indexed:** 2 documents" in listing and "**By type:** md 2" in listing
    assert "uploaded in the chat 2" in listing and "| Document |" in listing
    assert "](<http://assistant.test:8000/documents/" in listing  # each title opens its original
    removes = [a for a in actions(session) if a["name"] == documents.ACT_ASK]
    assert len(removes) == 2

    zorblax = next(a for a in removes if "Zorblax" in a["label"])
    await app.document_remove_ask(action_from(zorblax))
    question = status_lines(session)[-1]
    assert question.startswith("Remove **Zorblax field guide**") and "uploaded file is deleted too" in question
    confirm = next(a for a in actions(session) if a["name"] == documents.ACT_REMOVE)
    await app.document_remove(action_from(confirm))
    assert "Removed **Zorblax field guide** and its uploaded file" in status_lines(session)[-1]
    assert "1 document remains" in status_lines(session)[-1]
    assert [e for e, _ in emitted(session)].count("remove_action") == 2  # both buttons taken away
    assert not rt.settings.uploads_dir.joinpath("zorblax.md").exists()

    await app.document_remove(action_from(confirm))  # a second click, or a stale button
    assert errors(session) == [documents.GONE]
    await app.document_remove_ask(action_from(zorblax))
    assert errors(session) == [documents.GONE, documents.GONE]

    await send("/documents other")  # typed, with a filter
    assert "“other”" in status_lines(session)[-1] and "1 document" in status_lines(session)[-1]


async def test_documents_for_a_non_admin_lists_but_never_removes(
        retriever: Retriever, use_runtime: Any, sessions: list, tmp_path: Path) -> None:
    use_runtime(runtime_with(retriever, users=USERS, admins=("alice",)))
    alice = await open_session(sessions, user="alice")
    await send("", [attach(tmp_path, "zorblax.md", GUIDE)])
    [doc] = retriever.store.documents()
    bob = await open_session(sessions, user="bob")
    await send("/documents")
    assert "**Indexed:** 1 document" in status_lines(bob)[-1]
    assert [a for a in actions(bob) if a["name"] == documents.ACT_ASK] == []
    forged = cl.Action(name=documents.ACT_REMOVE, payload={"id": doc["id"], "pair": []}, forId="x")
    await app.document_remove(forged)  # a hand-made request for the confirmation's action
    assert errors(bob) == [uploads.NOT_ALLOWED] and retriever.store.document_count() == 1
    assert errors(alice) == []


async def test_documents_pages_and_an_empty_index(retriever: Retriever, use_runtime: Any, sessions: list,
                                                  tmp_path: Path) -> None:
    use_runtime(runtime_with(retriever))
    session = await open_session(sessions)
    await send("/documents")
    assert "Nothing is indexed yet" in status_lines(session)[-1]
    for i in range(documents.PAGE_SIZE + 1):  # cheap documents: written directly, one passage each
        path = tmp_path / f"doc{i:02d}.txt"
        path.write_text(f"Document number {i} about nothing in particular.")
        from assistant.retrieval.ingest import ingest_paths

        ingest_paths([path], retriever.store, retriever.embedder, retriever.store.settings, progress=False)
    await send("/documents")
    more = [a for a in actions(session) if a["name"] == documents.ACT_LIST]
    assert len(more) == 1 and "local files 11" in status_lines(session)[-1]
    await app.documents_more(action_from(more[0]))
    assert status_lines(session)[-1].count("\n| ") == 1 + 1  # the header row and the one left


def test_the_progress_line_says_where_the_upload_is() -> None:
    progress = uploads.UploadProgress(phase="waiting")
    assert "waiting for another upload to finish" in upload_chat._status("a.md", progress)
    progress.phase = "reading"
    assert upload_chat._status("a.md", progress).startswith("Reading **a\\.md**")
    progress.phase, progress.total = "embedding", 40
    progress.advance(12)
    assert "12 of 40 passages embedded" in upload_chat._status("a.md", progress)
    progress.advance(100)
    assert progress.done == 40
