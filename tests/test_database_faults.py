"""PostgreSQL going away and coming back, and ingestion killed mid-run, against real servers.

Every test here uses its own PostgreSQL (tests/fakes/postgres.py), which it stops (a clean fast
shutdown that ends every session, or an immediate one, like a crash) and starts again on the
same address; the session server of the other tests is never touched. What is checked is what a
user would see: one clear line within seconds (never a hang, never a traceback), a process that
stays up, and the next request working once the server is back, with no restart.

Timings are recorded (test-artifacts/database-faults.json, for docs/RELIABILITY.md), never
asserted; the only time limits are hang guards, many times larger than the expected figures.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg_pool.base import AttemptWithBackoff

from assistant.config import Settings
from assistant.retrieval import open_retriever
from assistant.retrieval import store_search as store_module
from assistant.retrieval.chunking import chunk_document
from assistant.retrieval.embedders import make_embedder
from assistant.retrieval.errors import DatabaseError
from assistant.retrieval.ingest import ingest_paths
from assistant.retrieval.loaders import load_file
from assistant.retrieval.store import Store
from assistant.ui.datalayer import RATING_NOT_SAVED
from assistant.ui.turn import DB_DOWN
from tests.conftest import ARTIFACTS, ROOT, make_settings
from tests.fakes.app_server import AppServer
from tests.fakes.embedding_server import EmbeddingServer
from tests.fakes.postgres import StoppablePostgres
from tests.fakes.socket_chat import ChatSession

pytestmark = pytest.mark.slow  # a PostgreSQL of its own per test, stopped and started again

QUESTION = "How do I deploy on Render?"
HANG_GUARD = 30.0  # seconds: far beyond any expected figure; only a hang reaches it
FIGURES: dict[str, Any] = {}


def record(name: str, value: Any) -> None:
    """Keep a measured figure; written to test-artifacts/database-faults.json after the module."""
    FIGURES[name] = round(value, 3) if isinstance(value, float) else value


@pytest.fixture(scope="module", autouse=True)
def write_figures() -> Iterator[None]:
    yield
    if FIGURES:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / "database-faults.json"
        old = json.loads(path.read_text()) if path.exists() else {}
        path.write_text(json.dumps({**old, **FIGURES}, indent=1, sort_keys=True) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def pg() -> Iterator[StoppablePostgres]:
    """This module's own server, which its tests stop and start."""
    with StoppablePostgres() as server:
        yield server


@pytest.fixture(autouse=True)
def server_back_up(request: pytest.FixtureRequest) -> Iterator[None]:
    """Whatever a test did to the server, the next one finds it running."""
    yield
    if "pg" in request.fixturenames:
        server: StoppablePostgres = request.getfixturevalue("pg")
        if not server.running:
            server.start()


@pytest.fixture(scope="module")
def sample_url(pg: StoppablePostgres, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database on the own server holding the sample corpus (from its shipped vectors)."""
    url = pg.create_database()
    settings = make_settings(database_url=url, data_dir=tmp_path_factory.mktemp("data"), sample_docs=True)
    open_retriever(settings, announce=False).store.close()
    return url


def settings_for(url: str, tmp_path: Path, **changes: Any) -> Settings:
    return make_settings(database_url=url, data_dir=tmp_path / "data", **changes)


def run_guarded(fn: Callable[[], Any], what: str) -> tuple[Any, BaseException | None, float]:
    """fn() in a thread: (result, exception, seconds); fails the test if it outlasts HANG_GUARD."""
    out: dict[str, Any] = {}

    def target() -> None:
        try:
            out["result"] = fn()
        except BaseException as exc:  # handed to the test
            out["error"] = exc

    started = time.monotonic()
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(HANG_GUARD)
    assert not thread.is_alive(), f"{what} hung for {HANG_GUARD} s"
    return out.get("result"), out.get("error"), time.monotonic() - started


def one_line(message: str) -> None:
    assert message and "\n" not in message and "Traceback" not in message, message


def wait_for(condition: Callable[[], Any], what: str, timeout: float = HANG_GUARD) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# -- searches --------------------------------------------------------------------------------------


def test_searches_fail_fast_while_the_server_is_down_then_the_same_pool_recovers(
        pg: StoppablePostgres, sample_url: str, tmp_path: Path) -> None:
    retriever = open_retriever(settings_for(sample_url, tmp_path), announce=False)
    try:
        assert retriever.search(QUESTION).hits
        pg.stop()
        for attempt in range(3):  # the first finds the pooled connection dead, the next ones no server
            _, error, seconds = run_guarded(lambda: retriever.search(QUESTION), "a search with the server down")
            assert isinstance(error, DatabaseError), error
            one_line(str(error))
            assert "Cannot reach PostgreSQL at 127.0.0.1" in str(error) and "server is up" in str(error)
            record(f"search_error_s_attempt{attempt + 1}", seconds)
        pg.start()
        result, error, seconds = run_guarded(lambda: retriever.search(QUESTION), "the first search after recovery")
        assert error is None and result.hits  # same Retriever, same pool: no reopening
        record("search_first_after_restart_s", seconds)
    finally:
        retriever.store.close()


def test_recovery_does_not_wait_for_the_pools_reconnect_backoff(
        pg: StoppablePostgres, sample_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """psycopg_pool retries a lost server with a doubling delay (1 s, 2 s, 4 s... until 300 s), so
    after a long outage its next attempt may be minutes away: measured before the fix, searches
    kept failing for 88 s after a 150 s outage ended. A steeper backoff makes 3 s look like that."""
    monkeypatch.setattr(AttemptWithBackoff, "DELAY_BACKOFF", 120.0)
    retriever = open_retriever(settings_for(sample_url, tmp_path), announce=False)
    try:
        assert retriever.search(QUESTION).hits
        pg.stop()
        stopped = time.monotonic()
        while time.monotonic() - stopped < 1.5:  # the pool's first two attempts fail: the next is far off
            with pytest.raises(DatabaseError):
                retriever.search(QUESTION)
        pg.start()
        result, error, seconds = run_guarded(lambda: retriever.search(QUESTION), "the search after recovery")
        assert error is None and result.hits, error
        record("search_after_restart_with_steep_backoff_s", seconds)
    finally:
        retriever.store.close()


def _waiting_on_lock(url: str) -> Callable[[], bool]:
    def check() -> bool:
        with psycopg.connect(url, autocommit=True) as conn:
            return bool(conn.execute(
                "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
            ).fetchone())
    return check


def test_a_search_stuck_in_the_server_is_cancelled_and_the_pool_keeps_working(
        sample_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A search waiting on a lock (a migration, a VACUUM FULL) would wait as long as the lock is held."""
    monkeypatch.setattr(store_module, "SEARCH_TIMEOUT", 1.0)
    retriever = open_retriever(settings_for(sample_url, tmp_path, db_pool_max=1), announce=False)
    blocker = psycopg.connect(sample_url)
    try:
        blocker.execute("LOCK TABLE chunks IN ACCESS EXCLUSIVE MODE")
        for mode in ("hybrid", "text"):
            _, error, seconds = run_guarded(lambda m=mode: retriever.search(QUESTION, mode=m), "a search on a lock")
            assert isinstance(error, DatabaseError), error
            one_line(str(error))
            assert "did not answer in time (canceling statement due to statement timeout); try again" in str(error)
            record(f"stuck_{mode}_search_cancelled_s", seconds)
        blocker.rollback()  # the lock is gone: the one pooled connection was given back and works
        assert retriever.search(QUESTION).hits
    finally:
        blocker.close()
        retriever.store.close()


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_a_search_in_flight_gets_an_error_when_the_server_stops(
        mode: str, pg: StoppablePostgres, sample_url: str, tmp_path: Path) -> None:
    """The search is really running in the server (blocked on a lock) when the server goes."""
    retriever = open_retriever(settings_for(sample_url, tmp_path), announce=False)
    blocker = psycopg.connect(sample_url)
    try:
        assert retriever.search(QUESTION).hits
        blocker.execute("LOCK TABLE chunks IN ACCESS EXCLUSIVE MODE")  # like a long migration
        outcome: dict[str, Any] = {}

        def search() -> None:
            try:
                retriever.search(QUESTION)
            except DatabaseError as err:
                outcome["error"], outcome["at"] = err, time.monotonic()

        thread = threading.Thread(target=search, daemon=True)
        thread.start()
        wait_for(_waiting_on_lock(sample_url), "the search to wait inside the server")
        stopped = time.monotonic()
        pg.stop(mode)
        thread.join(HANG_GUARD)
        assert not thread.is_alive(), "the in-flight search hung after the server stopped"
        error = outcome.get("error")
        assert isinstance(error, DatabaseError), "the in-flight search did not fail"
        one_line(str(error))
        assert str(error).startswith("Lost the connection to PostgreSQL at 127.0.0.1") and "try again" in str(error)
        record(f"in_flight_error_after_{mode}_stop_s", outcome["at"] - stopped)

        pg.start()
        result, error, seconds = run_guarded(lambda: retriever.search(QUESTION), "the search after recovery")
        assert error is None and result.hits
        record(f"in_flight_{mode}_first_search_after_restart_s", seconds)
    finally:
        blocker.close()
        retriever.store.close()


@pytest.fixture
def thawed(pg: StoppablePostgres) -> Iterator[StoppablePostgres]:
    """The server, thawed again whatever the test did (a frozen server would hang the next test)."""
    yield pg
    pg.thaw()


def test_a_frozen_server_gives_one_line_in_seconds_and_the_same_pool_recovers(
        thawed: StoppablePostgres, sample_url: str, tmp_path: Path) -> None:
    """SIGSTOP: sockets stay open and the kernel still accepts connections, so neither statement_timeout
    nor TCP timeouts fire; before the client-side deadline a search waited until the server resumed
    (20.0 s for a 20 s freeze). Now: the search in flight, the idle pooled connection's health check and
    the next request each give up after 1 s of silence plus one new-connection attempt of up to
    DB_CONNECT_TIMEOUT (about 6 s); after SIGCONT the same Retriever works at once."""
    pg = thawed
    retriever = open_retriever(settings_for(sample_url, tmp_path, db_pool_max=2), announce=False)
    blocker = psycopg.connect(sample_url)
    try:
        assert retriever.search(QUESTION).hits
        # 1. a search already inside the server (waiting on a lock) when the server freezes
        blocker.execute("LOCK TABLE chunks IN ACCESS EXCLUSIVE MODE")
        outcome: dict[str, Any] = {}

        def search() -> None:
            try:
                retriever.search(QUESTION)
            except DatabaseError as err:
                outcome["error"], outcome["at"] = err, time.monotonic()

        thread = threading.Thread(target=search, daemon=True)
        thread.start()
        wait_for(_waiting_on_lock(sample_url), "the search to wait inside the server")
        pg.freeze()
        frozen = time.monotonic()
        thread.join(HANG_GUARD)
        assert not thread.is_alive(), "the in-flight search hung on the frozen server"
        error = outcome.get("error")
        assert isinstance(error, DatabaseError), "the in-flight search did not fail"
        one_line(str(error))
        assert str(error).startswith("PostgreSQL at 127.0.0.1") and "stopped answering" in str(error), error
        assert "nor to a new connection" in str(error) and "check that the server is up" in str(error)
        record("frozen_in_flight_search_error_s", outcome["at"] - frozen)
        # 2. the next searches, while it stays frozen: every one answers in seconds
        for attempt in range(2):
            _, error, seconds = run_guarded(lambda: retriever.search(QUESTION), "a search on a frozen server")
            assert isinstance(error, DatabaseError), error
            one_line(str(error))
            assert "127.0.0.1" in str(error) and "answering" in str(error) and "server is up" in str(error), error
            record(f"frozen_search_error_s_attempt{attempt + 1}", seconds)
        # 3. SIGCONT: the same pool serves again (the lock holder's session is gone with its socket)
        pg.thaw()
        blocker.close()
        result, error, seconds = run_guarded(lambda: retriever.search(QUESTION), "the first search after the thaw")
        assert error is None and result.hits, error
        record("frozen_first_search_after_thaw_s", seconds)
    finally:
        blocker.close()
        retriever.store.close()


def test_a_slow_statement_on_a_live_server_is_not_mistaken_for_a_frozen_one(
        sample_url: str, tmp_path: Path) -> None:
    """The client only gives up when the server also ignores a new connection: a statement that runs
    for several times ANSWER_PATIENCE on a healthy server completes."""
    store = Store.open(settings_for(sample_url, tmp_path), announce=False)
    try:
        with store.connection() as conn:
            assert conn.execute("SELECT pg_sleep(3.5), 42").fetchone()[1] == 42
    finally:
        store.close()


def test_db_statement_timeout_is_set_on_every_pooled_connection(sample_url: str, tmp_path: Path) -> None:
    store = Store.open(settings_for(sample_url, tmp_path, db_statement_timeout=1.5), announce=False)
    try:
        with store.connection() as conn:
            assert conn.execute("SHOW statement_timeout").fetchone()[0] == "1500ms"
        with pytest.raises(DatabaseError, match="did not answer in time"), store.connection() as conn:
            conn.execute("SELECT pg_sleep(5)")
        with store.connection() as conn:  # the pool is fine afterwards
            assert conn.execute("SELECT 1").fetchone()[0] == 1
    finally:
        store.close()


def test_cli_search_with_the_server_down_prints_one_line_and_exits_1(
        pg: StoppablePostgres, sample_url: str, tmp_path: Path) -> None:
    pg.stop()
    env = {k: v for k, v in os.environ.items() if k not in Settings.ENV.values() and k != "HF_TOKEN"}
    env.update(DATABASE_URL=sample_url, ASSISTANT_DATA_DIR=str(tmp_path / "data"))
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "assistant", "search", QUESTION], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=HANG_GUARD)
    record("cli_search_server_down_s", time.monotonic() - started)
    assert done.returncode == 1 and done.stdout == ""
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: Cannot reach PostgreSQL at 127.0.0.1") and "Connection refused" in lines[0]


# -- the app: chat, feedback and /healthz through an outage ------------------------------------------


def _feedback(server: AppServer, session: ChatSession, for_id: str, value: int) -> httpx.Response:
    body = {"sessionId": session.session_id, "feedback": {"forId": for_id, "value": value}}
    return httpx.put(server.url + "/feedback", json=body, timeout=HANG_GUARD)


def _healthz(server: AppServer) -> httpx.Response:
    return httpx.get(server.url + "/healthz", timeout=HANG_GUARD)


def _reachable_healthz(server: AppServer) -> httpx.Response | None:
    """/healthz once the server listens (None before); fails the test if the process exited."""
    assert server.proc.poll() is None, server.log.read_text(errors="replace")[-3000:]
    try:
        response = _healthz(server)
    except httpx.TransportError:
        return None
    return response if response.json().get("status") != "starting" else None


@pytest.mark.reliability
def test_the_app_through_a_database_outage(pg: StoppablePostgres, sample_url: str, tmp_path: Path) -> None:
    """A real Chainlit server started while PostgreSQL is down; then chat, rating and /healthz while it
    goes down again, and after it is back."""
    pg.stop()
    server = AppServer("db-outage", {
        "DATABASE_URL": sample_url, "ASSISTANT_SAMPLE_DOCS": "0", "ASSISTANT_DATA_DIR": str(tmp_path / "data"),
    }, tmp_path)  # the chat's tables (threads, feedback) live in the same database, as in production
    try:
        # Booted without its database: the process serves, /healthz says why it is not ready...
        health = wait_for(lambda: _reachable_healthz(server), "the app to answer /healthz", timeout=150)
        assert health.status_code == 503 and health.json()["status"] == "error", health.text
        assert health.json()["database"].startswith("Cannot reach PostgreSQL at 127.0.0.1"), health.text
        pg.start()  # ...and becomes ready by itself once the database is up
        started = time.monotonic()
        server.wait_ready()
        record("app_boot_without_db_ready_after_db_start_s", time.monotonic() - started)
        asyncio.run(_outage_conversation(server, pg, sample_url))
        assert server.proc.poll() is None, "the app process died"
        log = server.log.read_text(errors="replace")
        # Operators get the reasons in the log (users got the plain lines checked above).
        assert "database unavailable during a chat turn: Cannot reach PostgreSQL" in log
        assert "could not save a rating: Cannot reach PostgreSQL" in log
    finally:
        server.stop()


async def _outage_conversation(server: AppServer, pg: StoppablePostgres, url: str) -> None:
    async with ChatSession(server.url) as chat:
        before = await chat.ask(QUESTION)
        assert before.ok, before.errors
        assert _healthz(server).status_code == 200

        pg.stop()
        during = await chat.ask(QUESTION)
        assert during.errors == [DB_DOWN] and during.done_at is not None
        record("app_chat_error_s", during.done_at - during.sent_at)

        started = time.monotonic()
        health = await asyncio.to_thread(_healthz, server)
        record("app_healthz_503_s", time.monotonic() - started)
        assert health.status_code == 503, health.text
        body = health.json()
        assert body["status"] == "error" and body["database"].startswith("Cannot reach PostgreSQL")

        started = time.monotonic()
        rated = await asyncio.to_thread(_feedback, server, chat, before.answer_id, 0)
        record("app_feedback_error_s", time.monotonic() - started)
        assert rated.status_code == 500  # Chainlit's /feedback turns the data layer's error into 500 + detail
        assert rated.json()["detail"] == RATING_NOT_SAVED  # shown in the UI's toast: no host, no driver text

        pg.start()
        started = time.monotonic()
        await asyncio.to_thread(wait_for, lambda: _healthz(server).status_code == 200, "/healthz to recover")
        record("app_healthz_200_after_restart_s", time.monotonic() - started)
        after = await chat.ask(QUESTION)
        assert after.ok, after.errors
        record("app_chat_after_restart_s", after.done_at - after.sent_at)

        rated = await asyncio.to_thread(_feedback, server, chat, before.answer_id, 1)
        assert rated.status_code == 200, rated.text
    with psycopg.connect(url) as conn:
        saved = conn.execute("SELECT value FROM chat_feedback WHERE id = %s", (rated.json()["feedbackId"],)).fetchone()
    assert saved == (1,)  # the rating given after recovery is stored


# -- ingestion killed mid-run -----------------------------------------------------------------------

WORDS = ("harbor lantern meadow quartz ribbon saddle timber velvet walnut yonder amber basil cedar"
         " dune ember fjord glacier hazel iris jasper").split()
DOCUMENTS = 12


def _write_corpus(folder: Path) -> list[Path]:
    """Markdown files of four sections each: several chunks per document at CHUNK_TOKENS=64."""
    folder.mkdir()
    paths = []
    for i in range(DOCUMENTS):
        sections = [f"# Field guide {i}\n"]
        for s in range(4):
            words = " ".join(WORDS[(i * 7 + s * 3 + k) % len(WORDS)] for k in range(45))
            sections.append(f"## Part {s} of guide {i}\n\nGuide {i}, part {s}: {words}.\n")
        path = folder / f"guide-{i:02d}.md"
        path.write_text("\n".join(sections), encoding="utf-8")
        paths.append(path)
    return paths


def _ingest_env(url: str, embeddings: EmbeddingServer, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in Settings.ENV.values() and k != "HF_TOKEN"}
    env.update(DATABASE_URL=url, ASSISTANT_DATA_DIR=str(data_dir), EMBEDDING_PROVIDER="hf",
               HF_API_URL=embeddings.hf_url, EMBEDDING_BATCH_SIZE="2", CHUNK_TOKENS="64", CHUNK_OVERLAP="0",
               EMBEDDING_TIMEOUT="10")
    return env


def _ingest(folder: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "assistant", "ingest", str(folder), "--quiet"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def _documents(url: str) -> dict[str, tuple[str, int, list[int]]]:
    """source -> (content hash, recorded chunk_count, ordinals of the chunks actually stored)."""
    with psycopg.connect(url) as conn:
        if conn.execute("SELECT to_regclass('chunks')").fetchone() == (None,):
            return {}  # the ingest has not created the tables yet
        rows = conn.execute("""
            SELECT d.source, d.content_hash, d.chunk_count,
                   coalesce(array_agg(c.ordinal ORDER BY c.ordinal) FILTER (WHERE c.id IS NOT NULL), '{}')
            FROM documents d LEFT JOIN chunks c ON c.document_id = d.id GROUP BY d.id""").fetchall()
    return {source: (digest, count, list(ordinals)) for source, digest, count, ordinals in rows}


def _assert_whole(documents: dict[str, tuple[str, int, list[int]]], paths: list[Path]) -> None:
    """Every stored document has exactly its chunks, 0..n-1, and the hash of the file on disk."""
    hashes = {str(p.resolve()): load_file(p).content_hash for p in paths}
    for source, (digest, count, ordinals) in documents.items():
        assert ordinals == list(range(count)) and count > 0, (source, count, ordinals)
        assert digest == hashes[source], source


@pytest.mark.reliability
def test_ingest_killed_or_cut_off_mid_run_leaves_only_whole_documents_and_a_rerun_completes(
        pg: StoppablePostgres, tmp_path: Path) -> None:
    paths = _write_corpus(tmp_path / "corpus")
    expected = {str(p.resolve()): len(chunk_document(load_file(p), max_tokens=64, overlap_tokens=0)) for p in paths}
    assert min(expected.values()) >= 3, expected  # several chunks, so a document can be half written
    killed_url, clean_url = pg.create_database(), pg.create_database()

    with EmbeddingServer() as embeddings:
        embeddings.hashed_vectors = True
        embeddings.fail(("delay", 0.05))  # slow enough to be caught mid-run
        env = _ingest_env(killed_url, embeddings, tmp_path / "data")
        proc = subprocess.Popen([sys.executable, "-m", "assistant", "ingest", str(tmp_path / "corpus"), "--quiet"],
                                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        blocker: psycopg.Connection | None = None
        try:
            wait_for(lambda: proc.poll() is None and len(_documents(killed_url)) >= 3, "three documents written",
                     timeout=90)
            # Kill it inside a document's transaction: its `DELETE FROM chunks` waits for this lock
            # with the document row already written (uncommitted) by then.
            blocker = psycopg.connect(killed_url)
            blocker.execute("LOCK TABLE chunks IN SHARE MODE")
            wait_for(_waiting_on_lock(killed_url), "the ingest to wait inside a document's transaction")
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(HANG_GUARD) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if blocker is not None:
                blocker.close()
        wait_for(lambda: not _waiting_on_lock(killed_url)(), "the killed ingest's transaction to end")
        left = _documents(killed_url)
        _assert_whole(left, paths)
        assert 3 <= len(left) < DOCUMENTS
        assert all(count == expected[source] for source, (_, count, _) in left.items())
        record("ingest_kill_documents_kept", len(left))
        record("ingest_kill_chunks_kept", sum(count for _, count, _ in left.values()))

        # A second run loses the server half-way: it stops at once, saying what was not done.
        second = subprocess.Popen([sys.executable, "-m", "assistant", "ingest", str(tmp_path / "corpus"), "--quiet"],
                                  cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: second.poll() is None and len(_documents(killed_url)) >= len(left) + 2,
                     "two more documents written", timeout=90)
            pg.stop()
            stopped = time.monotonic()
            out, err = second.communicate(timeout=HANG_GUARD)
            record("ingest_exit_after_server_stop_s", time.monotonic() - stopped)
        finally:
            if second.poll() is None:
                second.kill()
                second.communicate()
        pg.start()
        assert second.returncode == 1, err
        assert "failed" in out.splitlines()[0]  # the summary; each failure had its one line on stderr
        [failed] = [line for line in err.splitlines() if line.startswith("failed ")]
        assert "Cannot reach PostgreSQL at 127.0.0.1" in failed or "answering" in failed, err
        assert "run ingest again when this is fixed" in err
        assert "Traceback" not in err and "error connecting" not in err  # no pool warnings on the terminal
        left = _documents(killed_url)
        _assert_whole(left, paths)
        record("ingest_outage_documents_kept", len(left))

        embeddings.heal()
        started = time.monotonic()
        rerun = _ingest(tmp_path / "corpus", env)
        record("ingest_rerun_s", time.monotonic() - started)
        assert rerun.returncode == 0, rerun.stderr
        assert rerun.stdout.startswith(f"Ingest: {DOCUMENTS - len(left)} added, 0 updated, {len(left)} unchanged,"
                                       " 0 failed"), rerun.stdout
        clean = embeddings.settings("hf", database_url=clean_url, data_dir=tmp_path / "data", chunk_tokens=64,
                                    chunk_overlap=0, embedding_batch_size=2)
        store = Store.open(clean, announce=False)
        try:  # the clean run in this process (the same code path, without another interpreter start)
            assert ingest_paths([tmp_path / "corpus"], store, make_embedder(clean), clean, progress=False,
                                log=lambda line: None).ok
        finally:
            store.close()

    after, reference = _documents(killed_url), _documents(clean_url)
    _assert_whole(after, paths)
    assert {s: c for s, (_, c, _) in after.items()} == {s: c for s, (_, c, _) in reference.items()} == expected
    record("ingest_chunks_after_rerun", sum(c for _, c, _ in after.values()))
    record("ingest_chunks_clean_run", sum(c for _, c, _ in reference.values()))
