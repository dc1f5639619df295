"""Local passage embedding in bulk: the process pool of the command-line ingest (order, errors,
a killed worker, clean shutdown) and the in-process path of the chat server (a question asked
during an ingest goes before the remaining passages)."""

from __future__ import annotations

import os
import signal
import threading

import numpy as np
import psutil
import pytest

from assistant.retrieval.embedders import LocalEmbedder
from assistant.retrieval.errors import EmbeddingError
from assistant.retrieval.local_passages import PassagePool, available_cpus, embed_local_batch

TEXTS = [f"Passage {i}: the pump's filter number {i} is replaced every {i + 1} days." for i in range(11)]


@pytest.mark.slow
def test_the_pool_returns_every_batch_in_order_with_the_in_process_vectors():
    batches = [TEXTS[i:i + 3] for i in range(0, len(TEXTS), 3)]  # 4 batches over 2 workers
    with PassagePool(2, batch_size=3) as pool:
        pool.wait_ready()
        got = list(pool.map(batches))
        procs = [psutil.Process(p.pid) for p in pool._procs]
    assert [len(v) for v in got] == [3, 3, 3, 2]
    want = embed_local_batch(TEXTS)
    np.testing.assert_allclose(np.concatenate(got), want, atol=1e-5)
    _, alive = psutil.wait_procs(procs, timeout=5)
    assert not alive  # close() ended the workers


@pytest.mark.slow
def test_a_map_closed_early_does_not_leak_results_into_the_next():
    with PassagePool(2, batch_size=2) as pool:
        first = pool.map([TEXTS[0:2], TEXTS[2:4], TEXTS[4:6], TEXTS[6:8]])
        np.testing.assert_allclose(next(first), embed_local_batch(TEXTS[0:2]), atol=1e-5)
        first.close()  # the ingest gave up (e.g. one document failed): queued batches are dropped
        second = list(pool.map([TEXTS[8:10], TEXTS[10:11]]))
    np.testing.assert_allclose(np.concatenate(second), embed_local_batch(TEXTS[8:11]), atol=1e-5)


@pytest.mark.slow
def test_a_killed_worker_stops_the_run_with_a_message_that_says_what_to_do():
    with PassagePool(2, batch_size=1) as pool:
        pool.wait_ready()
        for proc in pool._procs:  # as the kernel's out-of-memory killer would (a survivor would just go on)
            os.kill(proc.pid, signal.SIGKILL)
            proc.join(5)
        with pytest.raises(EmbeddingError, match=r"stopped unexpectedly \(exit code -9; out of memory\?\).*"
                                                 r"INGEST_WORKERS=1"):
            list(pool.map([[t] for t in TEXTS]))


def test_available_cpus_is_within_what_the_machine_has():
    assert 1 <= available_cpus() <= (os.cpu_count() or 1)


@pytest.mark.slow
def test_a_question_during_an_in_process_ingest_goes_before_the_remaining_passages():
    """The chat server embeds uploads in-process: a question must not wait for the whole upload."""
    embedder = LocalEmbedder()
    engine = embedder._engine
    calls: list[str] = []
    started = threading.Event()

    class Spy:  # the real engine, recording the order of calls
        def passage(self, texts: list[str]) -> np.ndarray:
            calls.append("passages")
            started.set()
            return engine.passage(texts)

        def query(self, text: str) -> np.ndarray:
            calls.append("query")
            return engine.query(text)

        def token_count(self, text: str, is_query: bool = False) -> int:
            return engine.token_count(text, is_query)

    embedder._engine = Spy()
    texts = TEXTS * 3  # 33 passages: 9 groups of PASSAGE_HOLD
    ingest = threading.Thread(target=embedder.embed_passages, args=(texts,))
    ingest.start()
    started.wait(60)
    embedder.embed_query("how often is the filter replaced?")
    ingest.join()
    groups = -(-len(texts) // LocalEmbedder.PASSAGE_HOLD)
    assert calls.count("passages") == groups
    assert calls.index("query") <= 2, calls  # after the group in hand (and at most one more), not after all
