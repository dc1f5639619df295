"""The Chainlit handlers in assistant/app.py, driven without a browser.

Each test builds a real `WebsocketSession` whose `emit` is an AsyncMock and makes it the current
Chainlit context, then awaits the handlers as plain functions. What the browser would receive is
then in `emit.call_args_list`: `new_message`, `update_message`, `stream_start`, `stream_token`,
`element`... Search runs for real against the session's sample-corpus database; the LLM, when
there is one, is the loopback fake OpenAI server.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest.mock import AsyncMock

import chainlit as cl
import chainlit.data as cl_data
import pytest
from chainlit.chat_context import chat_context, chat_contexts
from chainlit.config import FILES_DIRECTORY
from chainlit.context import ChainlitContext, context_var
from chainlit.session import WebsocketSession
from psycopg import conninfo

from assistant.app import ChatApp
from assistant.chat.pipeline import ChatPipeline
from assistant.config import Settings
from assistant.retrieval import open_retriever
from assistant.retrieval.errors import DatabaseError
from assistant.retrieval.search import Retriever
from assistant.ui import turn
from assistant.ui.runtime import Runtime
from tests.conftest import make_settings

QUESTION = "How do I deploy on Render?"


def refuse_default(settings: Settings) -> Retriever:
    raise DatabaseError("tests must not open the default database")


# The handlers under test: `use_runtime` (and the autouse fixture) swap in a ChatApp over the test's runtime.
app = ChatApp(Runtime(make_settings(), opener=refuse_default))


# -- fixtures and helpers ------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_chainlit_data_layer(monkeypatch: pytest.MonkeyPatch) -> None:
    """Handler tests check the UI; the data layer has its own tests (tests/test_datalayer.py).
    And no test may open the default embedded database through a runtime it did not set up."""
    monkeypatch.setattr(cl_data, "_data_layer", None)
    monkeypatch.setattr(cl_data, "_data_layer_initialized", True)
    monkeypatch.setattr(sys.modules[__name__], "app", ChatApp(Runtime(make_settings(), opener=refuse_default)))


@pytest.fixture(scope="module")
def sample_settings(sample_database: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return make_settings(database_url=sample_database, data_dir=tmp_path_factory.mktemp("app-data"))


@pytest.fixture(scope="module")
def retriever(sample_settings: Settings) -> Iterator[Retriever]:
    """One retriever on the sample corpus for the module (like the app's one per process)."""
    r = open_retriever(sample_settings, announce=False, sample_docs=False)
    yield r
    r.store.close()


def runtime_for(retriever: Retriever, settings: Settings, **kw: Any) -> Runtime:
    return Runtime(settings, opener=lambda s: retriever, **kw)


@pytest.fixture
def use_runtime(monkeypatch: pytest.MonkeyPatch) -> Callable[[Runtime], Runtime]:
    def use(rt: Runtime) -> Runtime:
        monkeypatch.setattr(sys.modules[__name__], "app", ChatApp(rt))
        return rt

    return use




async def open_session(made: list[WebsocketSession], client_type: str = "webapp") -> WebsocketSession:
    """A live Chainlit session with a recording emitter, set as the current context."""
    session = WebsocketSession(
        id=str(uuid.uuid4()), socket_id=str(uuid.uuid4()), emit=AsyncMock(), emit_call=AsyncMock(),
        user_env={}, client_type=client_type,  # type: ignore[arg-type]
    )
    FILES_DIRECTORY.mkdir(exist_ok=True)  # element files go here (another Chainlit process may have removed it)
    session.has_first_interaction = True
    context_var.set(ChainlitContext(session))
    made.append(session)
    return session


async def ask(text: str) -> cl.Message:
    """What Chainlit does with an incoming user message, then our handler."""
    message = cl.Message(content=text, type="user_message", author="User")
    chat_context.add(message)
    await app.on_message(message)
    return message


def emitted(session: WebsocketSession) -> list[tuple[str, Any]]:
    return [(c.args[0], c.args[1] if len(c.args) > 1 else None) for c in session.emit.call_args_list]


def messages(session: WebsocketSession, kind: str = "assistant_message") -> list[dict]:
    """Final versions of messages of one type, in first-seen order (new_message/update_message)."""
    latest: dict[str, dict] = {}
    for event, data in emitted(session):
        if event in ("new_message", "update_message") and data.get("type") == kind:
            latest[data["id"]] = data
        elif event == "delete_message":
            latest.pop(data["id"], None)
    return list(latest.values())


def errors(session: WebsocketSession) -> list[str]:
    return [m["output"] for m in messages(session) if m.get("isError")]


def answers(session: WebsocketSession) -> list[dict]:
    return [m for m in messages(session) if not m.get("isError") and (m.get("metadata") or {}).get("answer")]


def elements(session: WebsocketSession) -> list[dict]:
    return [data for event, data in emitted(session) if event == "element"]


def element_text(session: WebsocketSession, element: dict) -> str:
    return Path(session.files[element["chainlitKey"]]["path"]).read_text(encoding="utf-8")


class SpyPipeline:
    """Records the arguments of every run() and delegates to the real pipeline."""

    def __init__(self, inner: ChatPipeline) -> None:
        self.inner = inner
        self.calls: list[dict[str, Any]] = []

    def run(self, question: str, history: list[dict], **kw: Any) -> Any:
        self.calls.append({"question": question, "history": history, **kw})
        return self.inner.run(question, history, **kw)


# -- the message flow ----------------------------------------------------------------------------


async def test_message_flow_extractive(retriever: Retriever, sample_settings: Settings, use_runtime: Any,
                                       sessions: list) -> None:
    use_runtime(runtime_for(retriever, sample_settings))
    session = await open_session(sessions)
    await ask(QUESTION)
    events = emitted(session)
    kinds = [e for e, _ in events]

    steps = messages(session, "retrieval")
    assert len(steps) == 1
    step = steps[0]
    assert step["name"].startswith("document search · ") and "passages" in step["name"]
    assert "**Searched for:** How do I deploy on Render" in step["output"]
    assert "| 1 |" in step["output"] and step["end"]

    [final] = answers(session)
    assert kinds.index("stream_start") < max(i for i, (e, d) in enumerate(events)
                                             if e == "new_message" and d["id"] == final["id"])
    first_step = next(i for i, (e, d) in enumerate(events) if e == "new_message" and d["type"] == "retrieval")
    assert first_step < kinds.index("stream_start")  # the search step shows before the answer streams
    text = final["output"]
    assert "Retrieval-only answer" in text and "**Sources:** [1]" in text and "Deploying to Render" in text
    meta = final["metadata"]
    assert meta["question"] == QUESTION and meta["kind"] == "extractive" and meta["cited"]
    assert {s["n"] for s in meta["sources"]} == set(meta["cited"]) | set(meta["also_retrieved"])

    panels = elements(session)
    assert sorted(p["name"] for p in panels) == sorted(f"[{s['n']}]" for s in meta["sources"])
    assert all(p["display"] == "side" and p["forId"] == final["id"] and p["type"] == "text" for p in panels)
    first = next(p for p in panels if p["name"] == f"[{meta['cited'][0]}]")
    body = element_text(session, first)
    cited_hit = next(s for s in meta["sources"] if s["n"] == meta["cited"][0])
    assert body.startswith("### ") and "**Passage" in body and cited_hit["title"].split()[0] in body
    assert errors(session) == []


async def test_follow_up_gets_history_and_the_widget_gets_compact_links(
        retriever: Retriever, sample_settings: Settings, use_runtime: Any, sessions: list) -> None:
    spy: list[SpyPipeline] = []

    def factory(r: Retriever, s: Settings) -> SpyPipeline:
        spy.append(SpyPipeline(ChatPipeline(r, s, titles=r.store)))
        return spy[-1]

    use_runtime(runtime_for(retriever, sample_settings, pipeline_factory=factory))  # type: ignore[arg-type]
    session = await open_session(sessions, client_type="copilot")
    await ask(QUESTION)
    await ask("Which health check path does it use?")
    calls = spy[0].calls
    assert [c["compact"] for c in calls] == [True, True]
    assert calls[0]["history"] == []
    history = calls[1]["history"]
    assert history[0] == {"role": "user", "content": QUESTION}
    assert history[1]["role"] == "assistant" and "Sources:" not in history[1]["content"]
    assert elements(session) == []  # no side panels in the widget
    for final in answers(session):
        assert "**Sources:** \\[" in final["output"]  # escaped numbers: plain text, not element links
        assert final["metadata"]["widget"] is True


async def test_settings_change_top_k_mode_and_filter(retriever: Retriever, sample_settings: Settings,
                                                     use_runtime: Any, sessions: list) -> None:
    use_runtime(runtime_for(retriever, sample_settings))
    session = await open_session(sessions)
    await app.chat_start()
    sent = [d for e, d in emitted(session) if e == "chat_settings"]
    assert [w["id"] for w in sent[0]] == ["top_k", "mode", "source_filter"]
    assert sent[0][0]["min"] == 1 and sent[0][0]["max"] == 20

    session.chat_settings = {"top_k": 2, "mode": "text", "source_filter": "type=md"}
    await ask("pgvector extension")
    step = messages(session, "retrieval")[-1]
    assert "full-text only" in step["output"] and "**Filter:** type\\=md" in step["output"]
    assert step["output"].count("\n| ") == 2 + 1  # header + 2 hits

    session.chat_settings = {"top_k": 5, "mode": "hybrid", "source_filter": "colour=red"}
    await app.settings_update(session.chat_settings)
    await ask("pgvector extension")
    errs = errors(session)
    assert len(errs) == 2 and all("Unknown filter key 'colour'" in e for e in errs)
    assert len(messages(session, "retrieval")) == 1  # no search ran with a bad filter


# -- user errors and faults: one line each, the session goes on ----------------------------------


@pytest.mark.parametrize("text,expected", [
    ("   \n\t ", "Please type a question."),
    ("🙂🎉🔥", "emoji or symbols alone can't be searched"),
])
async def test_unusable_input_is_one_line(text: str, expected: str, retriever: Retriever,
                                          sample_settings: Settings, use_runtime: Any, sessions: list) -> None:
    use_runtime(runtime_for(retriever, sample_settings))
    session = await open_session(sessions)
    await ask(text)
    errs = errors(session)
    assert len(errs) == 1 and expected in errs[0] and "\n" not in errs[0]
    assert messages(session, "retrieval") == [] and answers(session) == []
    await ask(QUESTION)  # still alive
    assert len(answers(session)) == 1


@pytest.mark.slow
async def test_a_50000_character_message_is_answered_with_a_notice(
        retriever: Retriever, sample_settings: Settings, use_runtime: Any, sessions: list) -> None:
    use_runtime(runtime_for(retriever, sample_settings))
    session = await open_session(sessions)
    await ask(("How do I deploy on Render with a health check? " * 1100)[:50_000])
    [final] = answers(session)
    warning_lines = [ln for ln in final["output"].splitlines() if ln.startswith("⚠️")]
    assert len(warning_lines) == 1 and "50\\,000 characters" in warning_lines[0]
    assert errors(session) == []


async def test_database_down_at_start_then_back_without_restart(
        retriever: Retriever, sample_settings: Settings, use_runtime: Any, sessions: list) -> None:
    state = {"down": True}

    def opener(s: Settings) -> Retriever:
        if state["down"]:
            raise DatabaseError("Cannot reach PostgreSQL at db.internal:5432/docs (connection refused)")
        return retriever

    rt = use_runtime(Runtime(sample_settings, opener=opener, retry_after=0.0))
    session = await open_session(sessions)
    await ask(QUESTION)
    assert errors(session) == [turn.DB_DOWN]
    assert rt.error and "connection refused" in rt.error
    assert "db.internal" not in turn.DB_DOWN  # operators read the log; users get the plain line
    state["down"] = False
    await ask(QUESTION)
    assert len(answers(session)) == 1 and rt.ready


class PgProxy:
    """A TCP proxy in front of the test PostgreSQL that can be cut and restored (a DB going away)."""

    def __init__(self, url: str) -> None:
        params = conninfo.conninfo_to_dict(url)
        host, port = str(params.get("host") or "localhost"), int(params.get("port") or 5432)
        self.target: Any = f"{host}/.s.PGSQL.{port}" if host.startswith("/") else (host, port)
        self.family = socket.AF_UNIX if host.startswith("/") else socket.AF_INET
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        params.update(host="127.0.0.1", port=str(self.port))
        self.url = conninfo.make_conninfo(**params)
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._up = False

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self._listener = listener
        with self._lock:
            self._up = True
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.socket(self.family)
            try:
                upstream.connect(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                if not self._up:  # stop() ran while this one was being connected: cut it too
                    client.close()
                    upstream.close()
                    continue
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        """Refuse new connections and cut the open ones, like a database that went away."""
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() thread; close() alone does not
            self._listener.close()
            self._listener = None
        with self._lock:
            conns, self._conns, self._up = self._conns, [], False
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()


@pytest.mark.slow
async def test_database_going_away_between_two_messages(sample_database: str, tmp_path: Path, use_runtime: Any,
                                                        sessions: list) -> None:
    proxy = PgProxy(sample_database)
    proxy.start()
    settings = make_settings(database_url=proxy.url, data_dir=tmp_path, db_connect_timeout=1)
    rt = use_runtime(Runtime(settings, opener=lambda s: open_retriever(s, announce=False, sample_docs=False)))
    try:
        session = await open_session(sessions)
        await ask(QUESTION)
        assert len(answers(session)) == 1

        proxy.stop()
        await ask(QUESTION)
        assert errors(session) == [turn.DB_DOWN]
        assert len(messages(session, "retrieval")) == 1  # the failed search step was taken back

        proxy.start()  # back: questions work again, with no restart
        for _ in range(20):  # the pool reconnects by itself (with a short backoff); a user asks again
            await ask(QUESTION)
            if len(answers(session)) == 2:
                break
            await asyncio.sleep(0.5)
        assert len(answers(session)) == 2
        assert set(errors(session)) == {turn.DB_DOWN}
    finally:
        proxy.stop()
        rt.close()


@pytest.mark.parametrize("script,notice", [
    (("status", 401), "rejected this site\\'s API key"),
    (("status", 429), "rate limited"),
    (("status", 500), "service failed"),
    (("stall", 3.0), "did not answer in time"),
    (("cut", "According to the documentation, you [1]"), "cut off"),
])
@pytest.mark.slow
async def test_llm_failures_become_one_notice_line(script: tuple, notice: str, llm_server: Any,
                                                   retriever: Retriever, sample_database: str,
                                                   use_runtime: Any, sessions: list) -> None:
    settings = llm_server.settings(database_url=sample_database, llm_timeout=1.0)
    use_runtime(runtime_for(retriever, settings))
    llm_server.script(script)
    session = await open_session(sessions)
    await ask(QUESTION)
    [final] = answers(session)
    lines = [ln for ln in final["output"].splitlines() if ln.startswith("⚠️")]
    assert len(lines) == 1 and notice.lower() in lines[0].lower()
    assert "Traceback" not in final["output"] and errors(session) == []
    await ask(QUESTION)  # the default script answers normally now
    assert answers(session)[-1]["metadata"]["kind"] == "generated"


async def test_generated_answer_streams_tokens_and_links_cited_sources(
        llm_server: Any, retriever: Retriever, sample_database: str, use_runtime: Any, sessions: list) -> None:
    use_runtime(runtime_for(retriever, llm_server.settings(database_url=sample_database)))
    session = await open_session(sessions)
    await ask(QUESTION)
    tokens = [d for e, d in emitted(session) if e == "stream_token"]
    assert len(tokens) > 5  # streamed piece by piece, not sent at once
    [final] = answers(session)
    meta = final["metadata"]
    assert meta["kind"] == "generated" and final["output"].startswith("According to the documentation")
    assert "Retrieval-only" not in final["output"]
    assert {p["name"] for p in elements(session)} >= {f"[{n}]" for n in meta["cited"]}


# -- lifecycle ----------------------------------------------------------------------------------


async def test_chat_end_frees_the_session_messages(retriever: Retriever, sample_settings: Settings,
                                                   use_runtime: Any, sessions: list) -> None:
    use_runtime(runtime_for(retriever, sample_settings))
    session = await open_session(sessions)
    await ask(QUESTION)
    assert session.id in chat_contexts
    app.chat_end()
    assert session.id not in chat_contexts


async def test_starters_come_from_the_indexed_documents(retriever: Retriever, sample_settings: Settings,
                                                        use_runtime: Any) -> None:
    use_runtime(runtime_for(retriever, sample_settings))
    starters = await app.starters()
    assert 1 <= len(starters) <= 4
    assert all(isinstance(s, cl.Starter) and s.message.endswith("?") for s in starters)

    def words(text: str) -> set[str]:
        return {w for w in re.findall(r"[a-z]{4,}", text.lower())}

    headings = [words(r["title"]) | words(s) for r in retriever.store.titles() for s in (r["sections"] or [])]
    for starter in starters:  # each starter is about some indexed document section
        assert any(len(words(starter.message) & h) >= 2 for h in headings), starter.message


@pytest.mark.slow
async def test_starters_are_empty_while_search_cannot_open(sample_settings: Settings, use_runtime: Any) -> None:
    def opener(s: Settings) -> Retriever:
        raise DatabaseError("down")

    use_runtime(Runtime(sample_settings, opener=opener))
    assert await app.starters() == []


async def test_a_rewritten_follow_up_is_shown_in_the_search_step(
        llm_server: Any, retriever: Retriever, sample_database: str, use_runtime: Any, sessions: list) -> None:
    use_runtime(runtime_for(retriever, llm_server.settings(database_url=sample_database)))
    session = await open_session(sessions)
    await ask(QUESTION)
    llm_server.script(("condense", "Which health check path does Render use for Doc Assistant?"))
    await ask("and which path does it check?")
    step = messages(session, "retrieval")[-1]
    assert "**Searched for:** Which health check path does Render use for Doc Assistant" in step["output"]
    assert "*Rewritten from your follow-up:* and which path does it check\\?" in step["output"]
    assert answers(session)[-1]["metadata"]["query"].startswith("Which health check path")
