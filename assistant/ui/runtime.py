"""The process-wide search resources: one Retriever and one ChatPipeline, shared by every session.

Opening them is slow the first time (the embedded database starts, the embedding model loads, an
empty database gets the sample corpus), so the app starts it in a background thread once the
server's port accepts connections: the first question does not pay for it, and the warm-up does
not compete for the CPU with binding the port (at Render's 0.1 CPU every CPU second before the
port opens is ten seconds of a visitor's wait). The database's connection pool opens first, on its
own (`database()`: chat history needs nothing more, so it does not wait for the embedding
model). Then two phases: first the retriever (embedder, on that pool: `searchable`, what /healthz
reports) with the modules the first answer
needs (and the whole chat pipeline when no LLM is configured: it is cheap then); then the
starter questions and, with an LLM, the pipeline (it imports the `openai` client and loads the
tokenizer: seconds at 0.1 CPU, which /healthz need not wait for). Anything that needs them
before they are ready waits; if opening fails (database down at boot), the error is kept for
/healthz and opening is retried on the next use, so the app recovers without a restart.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

from assistant.config import Settings
from assistant.retrieval.errors import AssistantError, DatabaseError

if TYPE_CHECKING:
    from assistant.chat.pipeline import ChatPipeline
    from assistant.retrieval.database import Connections
    from assistant.retrieval.search import Retriever
    from assistant.retrieval.store import Store
    from assistant.ui.starters import StarterQuestion

log = logging.getLogger(__name__)

WARMUP_QUERY = "How do I get started?"
PORT_WAIT = 60.0  # seconds the warm-up waits for the server's port before starting anyway
# Modules the first chat turn imports on first use; the warm-up loads them so the first answer
# doesn't pay for it (missing ones are skipped: they are optional or version-specific).
FIRST_TURN_MODULES = ("assistant.ui.turn",)
FIRST_LLM_TURN_MODULES = ("openai.resources.chat.completions.completions", "anyio._core._sockets")


@dataclass
class Probe:
    """The last known state of a dependency: `ok`, an error line, and when it was checked."""

    ok: bool | None = None  # None: never checked
    detail: str = "not checked yet"
    at: float = 0.0

    def set(self, ok: bool, detail: str = "ok") -> None:
        self.ok, self.detail, self.at = ok, ("ok" if ok else detail), time.monotonic()

    def age(self) -> float:
        return time.monotonic() - self.at if self.at else float("inf")


def _default_database(settings: Settings) -> Store:
    from assistant.retrieval.store import Store

    return Store.open(settings, announce=True)


def _default_pipeline(retriever: Retriever, settings: Settings) -> ChatPipeline:
    from assistant.chat.pipeline import ChatPipeline

    return ChatPipeline(retriever, settings, titles=retriever.store)


class Runtime:
    """Lazily opened, shared database pool, Retriever and ChatPipeline, with background warm-up and retry.

    `opener(settings)` replaces the whole retriever (tests pass one already open; its store is then
    the database); by default the database opens first and the retriever is built on it.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        opener: Callable[[Settings], Retriever] | None = None,
        pipeline_factory: Callable[[Retriever, Settings], ChatPipeline] = _default_pipeline,
        retry_after: float = 3.0,
    ) -> None:
        self.settings = settings
        self._opener = opener
        self._database: Store | None = None
        self._database_lock = threading.Lock()
        self._pipeline_factory = pipeline_factory
        self._retry_after = retry_after
        self._lock = threading.Lock()  # held while opening (may take minutes on a first start)
        self._warm_lock = threading.Lock()  # only guards the warm-up thread handle
        self._pipeline_lock = threading.Lock()  # held while building the chat pipeline
        self._retriever: Retriever | None = None
        self._searchable = threading.Event()  # set once the retriever is open
        self._pipeline: ChatPipeline | None = None
        self._error: str | None = None
        self._failed_at = 0.0
        self._warmup: threading.Thread | None = None
        self._serving = threading.Event()  # a request was served: the port is open
        self._database_hooks: list[Callable[[Connections], Any]] = []
        self._starters: list[StarterQuestion] | None = None
        self.embedder_probe = Probe()

    # -- state -----------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """True once the retriever and pipeline are open."""
        return self._pipeline is not None

    @property
    def searchable(self) -> bool:
        """True once the retriever (database + embedder) is open; the pipeline may still be loading."""
        return self._retriever is not None

    @property
    def warming(self) -> bool:
        """True while the background warm-up is running."""
        return self._warmup is not None and self._warmup.is_alive()

    @property
    def error(self) -> str | None:
        """Why the last attempt to open failed (None when open or never failed)."""
        return None if self.ready else self._error

    @property
    def chat_state(self) -> str:
        """The chat pipeline for /healthz: "ok", "starting: ..." or why it failed."""
        if self.ready:
            return "ok"
        if self._error and self.searchable:
            return self._error
        what = "the language model client" if self.settings.llm_enabled else "the answer pipeline"
        return f"starting: loading {what}"

    def on_database(self, hook: Callable[[Connections], Any]) -> None:
        """Run `hook(database)` once the database is open (e.g. the chat tables' migrations); errors are logged."""
        self._database_hooks.append(hook)
        opened = self._database or (self._retriever.store if self._retriever is not None else None)
        if opened is not None:
            self._run_hook(hook, opened)

    def _run_hook(self, hook: Callable[[Connections], Any], database: Connections) -> None:
        try:
            hook(database)
        except Exception as exc:  # a hook must not stop the chat from working
            log.warning("start-up hook %s failed: %s", getattr(hook, "__name__", hook), exc)

    # -- opening ---------------------------------------------------------------------------

    def pipeline(self) -> ChatPipeline:
        """The shared pipeline, opening everything first if needed (blocking; call off the loop)."""
        if self._pipeline is not None:
            return self._pipeline
        retriever = self.retriever()
        with self._pipeline_lock:
            if self._pipeline is not None:
                return self._pipeline
            self._check_retry()
            try:
                pipeline = self._pipeline_factory(retriever, self.settings)
            except Exception as exc:
                self._failed(exc, "The chat could not be started")
            self._error = None
            self._pipeline = pipeline
        return pipeline

    def database(self) -> Connections:
        """The shared connection pool, opened on first use without the embedder (blocking).

        Chat history (the data layer) needs only this, so it loads while the embedding model and the
        answer pipeline are still starting. With a test's `opener`, its retriever's store is the pool.
        """
        if self._database is not None:
            return self._database
        if self._opener is not None:
            return self.retriever().store
        with self._database_lock:
            if self._database is not None:
                return self._database
            self._check_retry()
            try:
                database = _default_database(self.settings)
            except Exception as exc:
                self._failed(exc, "The database could not be opened")
            self._error = None
            self._database = database
        for hook in list(self._database_hooks):
            self._run_hook(hook, database)
        return database

    def retriever(self) -> Retriever:
        """The shared retriever (database + embedder), opened on first use (blocking)."""
        if self._retriever is not None:
            return self._retriever
        fresh_store = self._opener is not None
        if not fresh_store:
            self.database()
        with self._lock:
            if self._retriever is not None:
                return self._retriever
            self._check_retry()
            try:
                retriever = self._open_retriever()
            except Exception as exc:
                self._failed(exc, "The search index could not be opened")
            self._error = None
            self._retriever = retriever
            self._searchable.set()
        log.info("search ready: %r", retriever.embedder)
        if fresh_store:
            for hook in list(self._database_hooks):
                self._run_hook(hook, retriever.store)
        return retriever

    def _open_retriever(self) -> Retriever:
        if self._opener is not None:
            return self._opener(self.settings)
        from assistant.retrieval import retriever_on

        assert self._database is not None
        return retriever_on(self._database, self.settings)

    def _check_retry(self) -> None:
        if self._error and time.monotonic() - self._failed_at < self._retry_after:
            raise DatabaseError(self._error)

    def _failed(self, exc: Exception, what: str) -> NoReturn:
        """Record why opening failed (for /healthz and the next retry) and raise it as an AssistantError."""
        if isinstance(exc, AssistantError):
            self._fail(str(exc))
            raise exc
        log.exception("%s", what)
        self._fail(f"{what} ({type(exc).__name__}); see the server log")
        raise AssistantError(self._error or "") from exc

    def _fail(self, message: str) -> None:
        self._error, self._failed_at = message, time.monotonic()
        log.warning("search is not available yet: %s", message)

    async def apipeline(self) -> ChatPipeline:
        """`pipeline()` without blocking the event loop."""
        if self._pipeline is not None:
            return self._pipeline
        return await asyncio.to_thread(self.pipeline)

    async def adatabase(self) -> Connections:
        """`database()` without blocking the event loop."""
        if self._database is not None:
            return self._database
        return await asyncio.to_thread(self.database)

    async def aretriever(self) -> Retriever:
        """`retriever()` without blocking the event loop."""
        if self._retriever is not None:
            return self._retriever
        return await asyncio.to_thread(self.retriever)

    # -- warm-up ---------------------------------------------------------------------------

    def start_warmup(self, listening: tuple[str, int] | None = None) -> threading.Thread:
        """Open everything and embed one query in a daemon thread (idempotent while running).

        With `listening=(host, port)`, the thread first waits (up to PORT_WAIT seconds) until that
        port accepts connections, so the warm-up never delays the server's start. A later call
        without it (a request arrived, so the server is up: e.g. /healthz) ends that wait at once.
        """
        with self._warm_lock:
            if listening is None:
                self._serving.set()
            if self._warmup is not None and self._warmup.is_alive():
                return self._warmup
            self._warmup = threading.Thread(target=self._warm, args=(listening,), name="assistant-warmup",
                                            daemon=True)
            self._warmup.start()
            return self._warmup

    def _warm(self, listening: tuple[str, int] | None = None) -> None:
        if listening is not None and not self.ready:
            wait_until_listening(*listening, serving=self._serving)
        started = time.perf_counter()
        llm = self.settings.llm_enabled
        try:
            self.database()  # chat history works from here on
            retriever = self.retriever()
            preload(FIRST_TURN_MODULES)
            if not llm:
                self.pipeline()  # cheap without an LLM: ready before /healthz says so
        except AssistantError:
            return  # kept in self.error for /healthz; the next question retries
        self.check_embedder(retriever)  # from here /healthz answers 200
        try:
            self.starters()
        except AssistantError as err:
            log.warning("could not build starter questions: %s", err)
        if llm:
            try:
                self.pipeline()  # imports the openai client and loads the tokenizer: seconds at 0.1 CPU
            except AssistantError:
                return
            self.check_llm()  # model name and tokenizer, findings in the server log
            preload(FIRST_LLM_TURN_MODULES)
        log.info("warm-up done in %.1f s", time.perf_counter() - started)

    def check_llm(self) -> None:
        """Check the LLM endpoint's model name and tokenizer once (findings go to the server log)."""
        check = getattr(self._pipeline, "check_llm", None)
        if check is None:
            return
        try:
            check()
        except Exception:  # a start-up check must never stop the app
            log.exception("LLM check failed")

    def check_embedder(self, retriever: Retriever | None = None) -> Probe:
        """Embed a fixed question with the provider itself (not the query cache); record the result."""
        retriever = retriever or self.retriever()
        embedder = getattr(retriever.embedder, "inner", retriever.embedder)
        try:
            embedder.embed_query(WARMUP_QUERY)
        except AssistantError as err:
            self.embedder_probe.set(False, " ".join(str(err).split())[:300])
        except Exception as exc:  # a provider bug must show in /healthz, not crash it
            log.exception("embedder check failed")
            self.embedder_probe.set(False, f"{type(exc).__name__}: {exc}"[:300])
        else:
            self.embedder_probe.set(True)
        return self.embedder_probe

    # -- starters --------------------------------------------------------------------------

    def starters(self) -> list[StarterQuestion]:
        """Starter questions from the indexed documents (cached once the corpus answered)."""
        if self._starters is not None:
            return self._starters
        from assistant.ui.starters import build_starters

        rows = self.retriever().store.titles()
        self._starters = build_starters(rows)
        return self._starters

    async def astarters(self, wait: float = 8.0) -> list[StarterQuestion]:
        """Starters for the welcome screen; [] when search is not ready within `wait` seconds."""
        if self._starters is not None:
            return self._starters
        if not self.searchable:
            if not self.warming:
                self.start_warmup()
            await asyncio.to_thread(self._searchable.wait, wait)
            if not self.searchable:
                return []
        try:
            return await asyncio.to_thread(self.starters)
        except AssistantError as err:
            log.warning("could not build starter questions: %s", err)
            return []

    def forget_starters(self) -> None:
        """Recompute starters on next use (after documents change)."""
        self._starters = None

    def close(self) -> None:
        """Close the pool (tests; the server process just exits)."""
        with self._lock, self._database_lock:
            if self._retriever is not None:
                self._retriever.store.close()
            if self._database is not None:
                self._database.close()
            self._retriever = self._pipeline = self._database = None
            self._searchable.clear()


def wait_until_listening(host: str, port: int, timeout: float = PORT_WAIT,
                         serving: threading.Event | None = None) -> bool:
    """Block until `host:port` accepts a TCP connection or `serving` is set (True), or `timeout`
    seconds pass (False). A wildcard host (0.0.0.0, ::, empty) is reached on its loopback address.
    """
    target = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    deadline = time.monotonic() + timeout
    while serving is None or not serving.is_set():
        try:
            with socket.create_connection((target, port), timeout=1.0):
                return True
        except OSError:
            if time.monotonic() >= deadline:
                log.warning("port %s:%s did not open within %.0f s; warming up anyway", host, port, timeout)
                return False
            if serving is not None:
                serving.wait(0.1)
            else:
                time.sleep(0.1)
    return True


def preload(modules: tuple[str, ...]) -> None:
    """Import `modules` now (best effort), so the first chat turn does not pay for them."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as err:
            log.debug("preload of %s skipped: %s", name, err)
