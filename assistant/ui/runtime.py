"""The process-wide search resources: one Retriever and one ChatPipeline, shared by every session.

Opening them is slow the first time (the embedded database starts, the embedding model loads, an
empty database gets the sample corpus), so the app starts it in a background thread as soon as
the server is up: the first question does not pay for it, and a cold start on a small host still
answers its health check quickly. Anything that needs them before they are ready waits; if
opening fails (database down at boot), the error is kept for /healthz and opening is retried on
the next use, so the app recovers without a restart.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from assistant.config import Settings
from assistant.retrieval.errors import AssistantError, DatabaseError

if TYPE_CHECKING:
    from assistant.chat.pipeline import ChatPipeline
    from assistant.retrieval.search import Retriever
    from assistant.ui.starters import StarterQuestion

log = logging.getLogger(__name__)

WARMUP_QUERY = "How do I get started?"


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


def _default_opener(settings: Settings) -> Retriever:
    from assistant.retrieval import open_retriever

    return open_retriever(settings, announce=True)


def _default_pipeline(retriever: Retriever, settings: Settings) -> ChatPipeline:
    from assistant.chat.pipeline import ChatPipeline

    return ChatPipeline(retriever, settings)


class Runtime:
    """Lazily opened, shared Retriever + ChatPipeline with background warm-up and retry."""

    def __init__(
        self,
        settings: Settings,
        *,
        opener: Callable[[Settings], Retriever] = _default_opener,
        pipeline_factory: Callable[[Retriever, Settings], ChatPipeline] = _default_pipeline,
        retry_after: float = 3.0,
    ) -> None:
        self.settings = settings
        self._opener = opener
        self._pipeline_factory = pipeline_factory
        self._retry_after = retry_after
        self._lock = threading.Lock()  # held while opening (may take minutes on a first start)
        self._warm_lock = threading.Lock()  # only guards the warm-up thread handle
        self._retriever: Retriever | None = None
        self._pipeline: ChatPipeline | None = None
        self._error: str | None = None
        self._failed_at = 0.0
        self._warmup: threading.Thread | None = None
        self._ready_hooks: list[Callable[[Retriever], Any]] = []
        self._starters: list[StarterQuestion] | None = None
        self.embedder_probe = Probe()

    # -- state -----------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """True once the retriever and pipeline are open."""
        return self._pipeline is not None

    @property
    def warming(self) -> bool:
        """True while the background warm-up is running."""
        return self._warmup is not None and self._warmup.is_alive()

    @property
    def error(self) -> str | None:
        """Why the last attempt to open failed (None when open or never failed)."""
        return None if self.ready else self._error

    def on_ready(self, hook: Callable[[Retriever], Any]) -> None:
        """Run `hook(retriever)` once opened (e.g. the chat tables' migrations); errors are logged."""
        self._ready_hooks.append(hook)
        if self._retriever is not None:
            self._run_hook(hook, self._retriever)

    def _run_hook(self, hook: Callable[[Retriever], Any], retriever: Retriever) -> None:
        try:
            hook(retriever)
        except Exception as exc:  # a hook must not stop the chat from working
            log.warning("start-up hook %s failed: %s", getattr(hook, "__name__", hook), exc)

    # -- opening ---------------------------------------------------------------------------

    def pipeline(self) -> ChatPipeline:
        """The shared pipeline, opening everything first if needed (blocking; call off the loop)."""
        if self._pipeline is not None:
            return self._pipeline
        with self._lock:
            if self._pipeline is not None:
                return self._pipeline
            if self._error and time.monotonic() - self._failed_at < self._retry_after:
                raise DatabaseError(self._error)
            try:
                retriever = self._retriever or self._opener(self.settings)
                self._retriever = retriever
                pipeline = self._pipeline_factory(retriever, self.settings)
            except AssistantError as err:
                self._fail(str(err))
                raise
            except Exception as exc:
                log.exception("opening the search index failed")
                self._fail(f"The search index could not be opened ({type(exc).__name__}); see the server log")
                raise AssistantError(self._error or "") from exc
            self._error = None
            self._pipeline = pipeline
        log.info("search ready: %r", retriever.embedder)
        for hook in list(self._ready_hooks):
            self._run_hook(hook, retriever)
        return pipeline

    def _fail(self, message: str) -> None:
        self._error, self._failed_at = message, time.monotonic()
        log.warning("search is not available yet: %s", message)

    def retriever(self) -> Retriever:
        """The shared retriever (opened with the pipeline)."""
        self.pipeline()
        assert self._retriever is not None
        return self._retriever

    async def apipeline(self) -> ChatPipeline:
        """`pipeline()` without blocking the event loop."""
        if self._pipeline is not None:
            return self._pipeline
        return await asyncio.to_thread(self.pipeline)

    async def aretriever(self) -> Retriever:
        """`retriever()` without blocking the event loop."""
        await self.apipeline()
        assert self._retriever is not None
        return self._retriever

    # -- warm-up ---------------------------------------------------------------------------

    def start_warmup(self) -> threading.Thread:
        """Open everything and embed one query in a daemon thread (idempotent while running)."""
        with self._warm_lock:
            if self._warmup is not None and self._warmup.is_alive():
                return self._warmup
            self._warmup = threading.Thread(target=self._warm, name="assistant-warmup", daemon=True)
            self._warmup.start()
            return self._warmup

    def _warm(self) -> None:
        started = time.perf_counter()
        try:
            retriever = self.retriever()
        except AssistantError:
            return  # kept in self.error for /healthz; the next question retries
        self.check_embedder(retriever)
        self.check_llm()
        try:
            self.starters()
        except AssistantError as err:
            log.warning("could not build starter questions: %s", err)
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
        if not self.ready:
            self.start_warmup()
            thread = self._warmup
            if thread is not None:
                await asyncio.to_thread(thread.join, wait)
            if not self.ready:
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
        with self._lock:
            if self._retriever is not None:
                self._retriever.store.close()
            self._retriever = self._pipeline = None
