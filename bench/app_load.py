"""The chat server under a small load: memory of the server process and answer latency in a real browser.

What it measures (embedded PostgreSQL in bench/.cache/app_load/, rebuilt on every run; DATABASE_URL
and the other settings in the environment are ignored):

1. A fresh database; the first app server indexes the sample corpus from the shipped vectors
   (ASSISTANT_SAMPLE_DOCS=1) during its warm-up. The scripted OpenAI-compatible server
   (tests/fakes/llm_server.py, default answers, no artificial delay) runs as its own process.
2. For each scenario, `chainlit run assistant/app.py --headless` as a subprocess in its own app root,
   ready once GET /healthz says 200; one warm-up question in the browser; then S concurrent
   sessions (one browser context each, headless Debian Chromium via async Playwright) ask Q
   distinct questions each, one after another (S x Q distinct questions in all, from
   tests/data/sample_questions.json and bench/cli_search.py).
3. A thread polls the server process's RSS (with its children, if any) every 20 ms and the
   embedded PostgreSQL's processes (reported separately, RSS and PSS sums) every 250 ms: RSS when
   ready, idle after the warm-up, peak during the load, and at the end (sessions closed); plus
   the kernel's high-water mark (VmHWM) of the server process over its whole life.
4. In the page, per question: a keydown listener notes performance.now() when Enter is pressed, a
   MutationObserver (plus a 10 ms poll) notes when the answer message first shows text (time to
   first token) and when it is complete (no streaming cursor, no stop button).

Scenarios: scripted LLM with the local embedder (the issue's figures), retrieval-only (no LLM key:
extractive answers), and scripted LLM with EMBEDDING_PROVIDER=hf pointed at the loopback stand-in
(tests/fakes/embedding_server.py, its own process), which shows the memory saved by not loading
the model in the server.

Usage: python -m bench.app_load [--sessions 5] [--questions 4] [--only llm,extractive,hf] [--no-write]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from playwright.async_api import TimeoutError as PlaywrightTimeout

from bench._common import (
    CACHE,
    REPO,
    append_report,
    machine_summary,
    md_table,
    median,
    mib,
    now_utc,
    percentile,
    postgres_memory,
    postgres_processes,
    product_free_env,
    vm_hwm,
)
from bench.cli_search import QUESTIONS as CLI_QUESTIONS

DATA_DIR = CACHE / "app_load"
PGDATA = DATA_DIR / "pgdata"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
ANSWER = '[data-step-type="assistant_message"]'
SENT = "document.querySelectorAll('[data-step-type=\"user_message\"]').length > window.__probe.users"
SUBMIT_ENABLED = "document.querySelector('#chat-submit') && !document.querySelector('#chat-submit').disabled"
STATE_JS = """(sel) => [window.__probe, document.querySelectorAll(sel).length,
  !!document.querySelector('.loading-cursor'), !!document.querySelector('#stop-button'),
  document.body.innerText.slice(-600)]"""
WARMUP_QUESTION = "How do I get started?"
TARGET_MB, LIMIT_MB = 256, 512

# Installed in the page before each question: note Enter, the first text of the new answer, its end.
ARM_JS = """(sel) => {
  const n = document.querySelectorAll(sel).length;
  const users = document.querySelectorAll('[data-step-type="user_message"]').length;
  const p = {n, users, t0: null, first: null, done: null, firstText: null};
  window.__probe = p;
  const onKey = (e) => { if (e.key === 'Enter' && p.t0 === null) p.t0 = performance.now(); };
  const onClick = (e) => { if (p.t0 === null && e.target.closest('#chat-submit')) p.t0 = performance.now(); };
  document.addEventListener('keydown', onKey, true);
  document.addEventListener('click', onClick, true);
  const check = () => {
    if (p.t0 === null || p.done !== null) return;
    const all = document.querySelectorAll(sel);
    if (all.length <= n) return;
    const el = all[n];
    const text = (el.innerText || '').trim();
    if (!text) return;
    const now = performance.now();
    if (p.first === null) { p.first = now; p.firstText = text.slice(0, 80); }
    if (!document.querySelector('.loading-cursor') && !document.querySelector('#stop-button')) {
      p.done = now; p.doneText = text.slice(0, 200);
      obs.disconnect(); clearInterval(timer); document.removeEventListener('keydown', onKey, true);
      document.removeEventListener('click', onClick, true);
    }
  };
  const obs = new MutationObserver(check);
  obs.observe(document.body, {childList: true, subtree: true, characterData: true, attributes: true});
  const timer = setInterval(check, 10);
}"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 150.0) -> float:
    """Poll until `url` answers 200; returns seconds waited."""
    t0 = time.monotonic()
    last = ""
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            break
        with contextlib.suppress(httpx.HTTPError):
            r = httpx.get(url, timeout=5)
            last = r.text
            if r.status_code == 200:
                return time.monotonic() - t0
        time.sleep(0.1)
    raise SystemExit(f"{url} not ready (last answer {last!r}); log tail:\n{log.read_text(errors='replace')[-3000:]}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def cpu_seconds(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            total += t.user + t.system
    return total


def cpu_snapshot(app_pid: int, helper_pids: list[int]) -> dict[str, float]:
    """CPU seconds used so far by the server, PostgreSQL, the fakes, this script and each browser process."""
    me = psutil.Process()
    app = psutil.Process(app_pid)
    app_tree = [app, *app.children(recursive=True)]
    skip = {p.pid for p in app_tree} | set(helper_pids)
    snap = {f"browser:{c.pid}": cpu_seconds([c]) for c in me.children(recursive=True) if c.pid not in skip}
    return {
        **snap,
        "server": cpu_seconds(app_tree),
        "postgres": cpu_seconds(postgres_processes(PGDATA)),
        "fakes": cpu_seconds([psutil.Process(pid) for pid in helper_pids if psutil.pid_exists(pid)]),
        "bench": cpu_seconds([me]),
    }


# -- memory sampling ---------------------------------------------------------------------------


class RssSampler(threading.Thread):
    """Server process tree RSS every `interval` s; embedded PostgreSQL RSS/PSS sums every `pg_interval` s."""

    def __init__(self, pid: int, pgdata: Path, interval: float = 0.02, pg_interval: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.root = psutil.Process(pid)
        self.pgdata = pgdata
        self.interval, self.pg_interval = interval, pg_interval
        self.app: list[tuple[float, int]] = []  # (monotonic time, RSS sum of the server and its children)
        self.pg: list[tuple[float, int, int, int]] = []  # (time, processes, RSS sum, PSS sum)
        self.max_children = 0
        self.child_names: set[str] = set()
        self._stop_event = threading.Event()

    def run(self) -> None:
        procs = [self.root]
        next_pg = next_tree = 0.0
        while not self._stop_event.is_set():
            now = time.monotonic()
            if now >= next_tree:  # children rarely change: refresh the list once a second
                next_tree = now + 1.0
                with contextlib.suppress(psutil.Error):
                    procs = [self.root, *self.root.children(recursive=True)]
                    self.max_children = max(self.max_children, len(procs) - 1)
                    self.child_names.update(" ".join(c.cmdline()[:3])[:80] for c in procs[1:])
            total = 0
            for p in procs:
                with contextlib.suppress(psutil.Error):
                    total += p.memory_info().rss
            if total:
                self.app.append((now, total))
            if now >= next_pg:
                next_pg = now + self.pg_interval
                n, rss, pss = postgres_memory(self.pgdata)
                self.pg.append((now, n, rss, pss))
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()

    def window(self, t0: float, t1: float) -> list[int]:
        return [v for t, v in self.app if t0 <= t <= t1]

    def pg_window(self, t0: float, t1: float) -> list[tuple[float, int, int, int]]:
        return [s for s in self.pg if t0 <= s[0] <= t1]


# -- servers -------------------------------------------------------------------------------------


@dataclass
class Helpers:
    """Processes this script started besides the app servers (fake LLM, fake embeddings)."""

    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def close(self) -> None:
        for p in self.procs:
            stop(p)


def start_fake_llm(work: Path, helpers: Helpers) -> str:
    port = free_port()
    log = work / "fake-llm.log"
    proc = subprocess.Popen([sys.executable, "-m", "tests.fakes.llm_server", "--port", str(port)], cwd=REPO,
                            env=product_free_env(), stdout=log.open("wb"), stderr=subprocess.STDOUT)
    helpers.procs.append(proc)
    wait_http(f"http://127.0.0.1:{port}/v1/models", proc, log, 30)
    return f"http://127.0.0.1:{port}/v1"


EMBED_SERVER = """
import sys, time
from tests.fakes.embedding_server import EmbeddingServer
server = EmbeddingServer(port=int(sys.argv[1])).start()
print("ready", flush=True)
while True:
    time.sleep(3600)
"""


def start_fake_embeddings(work: Path, helpers: Helpers) -> str:
    """The Hugging Face stand-in in its own process; returns an HF_API_URL template."""
    port = free_port()
    log = work / "fake-embeddings.log"
    proc = subprocess.Popen([sys.executable, "-c", EMBED_SERVER, str(port)], cwd=REPO, env=product_free_env(),
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)
    helpers.procs.append(proc)
    deadline = time.monotonic() + 60
    while "ready" not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"fake embedding server failed:\n{log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.1)
    return f"http://127.0.0.1:{port}/hf-inference/models/{{model}}/pipeline/feature-extraction"


@contextlib.contextmanager
def app_server(name: str, env: dict[str, str], work: Path) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    """`chainlit run assistant/app.py --headless` in its own app root (Chainlit deletes <root>/.files)."""
    port = free_port()
    root = work / f"{name}-root"
    root.mkdir()
    for item in (".chainlit", "public", "chainlit.md"):
        (root / item).symlink_to(REPO / item)
    log = work / f"{name}.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "chainlit", "run", str(REPO / "assistant" / "app.py"), "--headless",
         "--host", "127.0.0.1", "--port", str(port)],
        cwd=root, env={**env, "CHAINLIT_APP_ROOT": str(root), "PYTHONPATH": str(REPO)},  # `assistant` from REPO
        stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )
    try:
        yield proc, f"http://127.0.0.1:{port}", log
    finally:
        stop(proc)


# -- the browser -------------------------------------------------------------------------------


@dataclass
class Timing:
    session: int
    index: int  # position in the session (0 = first question)
    question: str
    ttft_ms: float
    total_ms: float
    first_text: str
    final_text: str
    resent: int = 0


async def open_chat(browser: Any, url: str) -> tuple[Any, Any]:
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    page.set_default_timeout(60_000)
    await page.goto(url)
    await page.locator("#chat-input").wait_for()
    await page.locator("#chat-submit").wait_for()
    await page.locator("#starters button").first.wait_for()  # the session is connected and answered
    return context, page


async def ask(page: Any, question: str) -> dict[str, Any]:
    """Type, press Enter, wait for the complete answer; the page's own clock times it."""
    box = page.locator("#chat-input")
    await box.fill(question)
    await page.wait_for_function(SUBMIT_ENABLED)
    await page.evaluate(ARM_JS, ANSWER)
    await box.press("Enter")
    resent = 0
    while True:  # rarely, on a busy machine, Enter is taken before the input's new value: send again
        try:
            await page.wait_for_function(SENT, timeout=5_000, polling=50)
            break
        except PlaywrightTimeout:
            if resent == 2:
                raise
            resent += 1
            await page.evaluate("window.__probe.t0 = null")
            if not await box.input_value():
                await box.fill(question)
            await page.locator("#chat-submit").click()
    try:
        await page.wait_for_function("window.__probe && window.__probe.done !== null", timeout=60_000, polling=50)
    except Exception as exc:
        state = await page.evaluate(STATE_JS, ANSWER)
        await page.screenshot(path=str(DATA_DIR / "timeout.png"))
        raise RuntimeError(f"no complete answer to {question!r}: {state}") from exc
    probe: dict[str, Any] = await page.evaluate("window.__probe")
    probe["resent"] = resent
    if probe["t0"] is None or probe["first"] is None:
        raise RuntimeError(f"probe incomplete: {probe}")
    return probe


async def session(browser: Any, url: str, number: int, questions: list[str], barrier: asyncio.Barrier,
                  marks: dict[str, float], cpu: dict[str, dict[str, float]],
                  snap: Callable[[], dict[str, float]], contexts: list[Any]) -> list[Timing]:
    context, page = await open_chat(browser, url)
    contexts.append(context)  # closed by drive() once the load is over (their renderers' CPU is counted)
    if await barrier.wait() == 0:  # every chat is connected: all sessions start asking together
        marks["load_start"] = time.monotonic()
        cpu["start"] = snap()
    out = []
    for i, q in enumerate(questions):
        p = await ask(page, q)
        out.append(Timing(number, i, q, p["first"] - p["t0"], p["done"] - p["t0"], p.get("firstText") or "",
                          p.get("doneText") or "", p["resent"]))
    return out


@dataclass
class LoadResult:
    timings: list[Timing]
    marks: dict[str, float]
    warmup: dict[str, Any]
    cpu: dict[str, float]  # CPU seconds used during the load, per group


async def drive(url: str, sessions: int, per_session: int, questions: list[str],
                snap: Callable[[], dict[str, float]]) -> LoadResult:
    from playwright.async_api import async_playwright

    marks: dict[str, float] = {}
    cpu: dict[str, dict[str, float]] = {}
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            context, page = await open_chat(browser, url)
            warm = await ask(page, WARMUP_QUESTION)
            await context.close()
            marks["warm_done"] = time.monotonic()
            await asyncio.sleep(3.0)  # idle window
            marks["idle_end"] = time.monotonic()
            barrier = asyncio.Barrier(sessions)
            contexts: list[Any] = []
            results = await asyncio.gather(*[
                session(browser, url, i, questions[i * per_session:(i + 1) * per_session], barrier, marks,
                        cpu, snap, contexts)
                for i in range(sessions)])
            marks["load_end"] = time.monotonic()
            cpu["end"] = snap()
            for context in contexts:
                await context.close()
        finally:
            await browser.close()
    marks["browser_closed"] = time.monotonic()
    await asyncio.sleep(3.0)
    marks["end"] = time.monotonic()
    used = {"browser": 0.0}
    for k, v in cpu["end"].items():  # browser processes started during the load count from zero
        if k.startswith("browser:"):
            used["browser"] += v - cpu["start"].get(k, 0.0)
        else:
            used[k] = v - cpu["start"][k]
    return LoadResult([t for r in results for t in r], marks, warm, used)


# -- one scenario ------------------------------------------------------------------------------


@dataclass
class Scenario:
    key: str
    label: str
    env: dict[str, str]


@dataclass
class ScenarioResult:
    scenario: Scenario
    ready_s: float
    load: LoadResult
    sampler: RssSampler
    hwm: int
    t_ready: float


def run_scenario(sc: Scenario, work: Path, args: argparse.Namespace, questions: list[str],
                 helpers: Helpers) -> ScenarioResult:
    with app_server(sc.key, sc.env, work) as (proc, url, log):
        sampler = RssSampler(proc.pid, PGDATA)
        sampler.start()
        try:
            ready_s = wait_http(url + "/healthz", proc, log)
            t_ready = time.monotonic()
            print(f"[{sc.key}] ready in {ready_s:.1f} s", file=sys.stderr)
            helper_pids = [p.pid for p in helpers.procs]
            load = asyncio.run(drive(url, args.sessions, args.questions, questions,
                                     lambda: cpu_snapshot(proc.pid, helper_pids)))
            hwm = vm_hwm(proc.pid)
        finally:
            sampler.stop()
    t = load.timings
    (DATA_DIR / f"timings-{sc.key}.json").write_text(json.dumps(
        {"children": sorted(sampler.child_names), "marks": load.marks, "warmup": load.warmup, "cpu": load.cpu,
         "timings": [t.__dict__ for t in load.timings]}, indent=1))
    print(f"[{sc.key}] {len(t)} answers; TTFT median {median([x.ttft_ms for x in t]):.0f} ms,"
          f" peak RSS {mib(max(sampler.window(load.marks['load_start'], load.marks['load_end'])))}", file=sys.stderr)
    return ScenarioResult(sc, ready_s, load, sampler, hwm, t_ready)


# -- report ------------------------------------------------------------------------------------


def ms(values: list[float]) -> str:
    return f"{median(values):.0f} / {percentile(values, 95):.0f}" if values else "-"


def verdict(peak: int) -> str:
    mb = peak / 2**20
    return "under target" if mb < TARGET_MB else ("over target, under limit" if mb < LIMIT_MB else "OVER LIMIT")


def cpu_note(results: list[ScenarioResult]) -> str:
    server = sum(r.load.cpu["server"] for r in results)
    answers = sum(len(r.load.timings) for r in results)
    browser = sum(r.load.cpu["browser"] for r in results)
    total = sum(sum(r.load.cpu.values()) for r in results)
    note = (f"The chat server used {1000 * server / answers:.0f} ms of CPU per answer (all scenarios);"
            f" Chromium and its driver took {browser / total:.0%} of the CPU time spent in the load windows.")
    if browser / total > 0.5:
        note += (" The browser is the bottleneck here: the latencies above are mostly its rendering of the"
                 " streamed tokens on saturated CPUs, an upper bound for the server's own latency.")
    return note


def report(results: list[ScenarioResult], args: argparse.Namespace) -> str:
    n_q = args.sessions * args.questions
    mem_rows, lat_rows, pg_rows, cpu_rows = [], [], [], []
    for r in results:
        s, m = r.sampler, r.load.marks
        ready = s.window(r.t_ready - 0.5, r.t_ready + 0.5) or s.window(0, r.t_ready + 1)
        idle = s.window(m["warm_done"] + 1.0, m["idle_end"])
        load = s.window(m["load_start"], m["load_end"])
        end = s.window(m["browser_closed"] + 1.5, m["end"])
        peak = max(load)
        mem_rows.append([r.scenario.label, f"{r.ready_s:.1f}", mib(ready[-1]) if ready else "-", mib(median(idle)),
                         f"**{mib(peak)}**", mib(median(end)), mib(r.hwm), verdict(peak)])
        pg_load = s.pg_window(m["load_start"], m["load_end"])
        pg_end = s.pg_window(m["browser_closed"], m["end"])
        if pg_load:
            pg_rows.append([r.scenario.label, max(x[1] for x in pg_load), mib(max(x[2] for x in pg_load)),
                            mib(max(x[3] for x in pg_load)),
                            f"{mib(pg_end[-1][2])} / {mib(pg_end[-1][3])}" if pg_end else "-"])
        t = r.load.timings
        first = [x for x in t if x.index == 0]
        later = [x for x in t if x.index > 0]
        wall = m["load_end"] - m["load_start"]
        lat_rows.append([r.scenario.label, len(t), ms([x.ttft_ms for x in t]), ms([x.total_ms for x in t]),
                         ms([x.ttft_ms for x in first]), ms([x.ttft_ms for x in later]),
                         f"{r.load.warmup['first'] - r.load.warmup['t0']:.0f}", f"{wall:.1f}",
                         f"{len(t) / wall:.2f}"])
        c = r.load.cpu
        cpu_rows.append([r.scenario.label, f"{wall:.1f}", *(f"{c[k]:.1f}" for k in ("server", "postgres", "browser",
                                                                                     "fakes", "bench")),
                         f"{sum(c.values()) / wall:.2f}"])
    children = max(r.sampler.max_children for r in results)
    resent = sum(x.resent for r in results for x in r.load.timings) + sum(r.load.warmup["resent"] for r in results)
    body = (
        f"### Memory of the chat server: {args.sessions} concurrent browser sessions x {args.questions} questions"
        f" ({n_q} distinct questions) per scenario\n\n"
        + md_table(["scenario", "ready after (s)", "RSS when ready", "idle RSS after warm-up (median)",
                    "peak RSS during the load", "RSS at the end (median)", "VmHWM (whole life)",
                    f"target {TARGET_MB} MB / limit {LIMIT_MB} MB"], mem_rows)
        + f"\n\nRSS of the `chainlit run` process{' and its children' if children else ''} (it started"
        f" {children} child processes), sampled every 20 ms ({sum(len(r.sampler.app) for r in results)} samples"
        " in all). \"Ready\" is the first 200 from /healthz (database open, embedder loaded, and on the first"
        " scenario the sample corpus indexed from shipped vectors into the fresh database); the warm-up is one"
        " question in one browser session; idle is the median over the 2 s before the load; the end is the"
        " median over ~1.5 s after every session closed. VmHWM is the kernel's high-water mark, start-up"
        " included. MiB throughout (the issue's MB).\n\n"
        "### Embedded PostgreSQL during the load (separate processes, not counted above)\n\n"
        + md_table(["scenario", "processes (most at once)", "peak RSS sum", "peak PSS sum",
                    "RSS / PSS sum at the end"], pg_rows)
        + "\n\nRSS sums count shared buffers once per process; PSS shares them out (the fairer total).\n\n"
        f"### Answer latency in the browser ({n_q} questions per scenario, {args.sessions} sessions at once)\n\n"
        + md_table(["scenario", "answers", "time to first token ms (median / p95)",
                    "time to complete answer ms (median / p95)", "TTFT, 1st question of a session",
                    "TTFT, follow-ups (condense step)", "TTFT warm-up (1 session alone)", "load wall s",
                    "answers / s"], lat_rows)
        + "\n\nTimed in the page with performance.now(): from the Enter keydown to the first text in the new"
        " answer message (MutationObserver plus a 10 ms poll), and to the complete answer (no streaming"
        " cursor, no stop button). The scripted LLM answers at once (no per-token delay), so these times are"
        " the app's own: websocket, session, follow-up condensing (a non-streamed LLM call for the 2nd-4th"
        " question of a session), query embedding, hybrid search, prompt building, streaming, the final"
        " message with sources, Chainlit's persistence, and the browser's rendering. Headless Chromium"
        f" ({args.sessions} contexts, one renderer each), the fake servers and PostgreSQL share the machine's"
        f" {os.cpu_count()} CPUs with the"
        " app, so under load the latencies include waiting for a CPU: the machine is shared and noisy, read"
        " the medians."
        f" Questions sent again (click) because an Enter was ignored on the busy machine: {resent}; their"
        " times start at the click.\n\n"
        "### Where the CPU went during the load (CPU seconds, user + system)\n\n"
        + md_table(["scenario", "load wall s", "chat server", "PostgreSQL", "Chromium + Playwright driver",
                    "fake LLM / embeddings", "this script", f"CPUs busy on average (of {os.cpu_count()})"], cpu_rows)
        + "\n"
    )
    return body


# -- main --------------------------------------------------------------------------------------


def load_questions(n: int) -> list[str]:
    data = json.loads((REPO / "tests" / "data" / "sample_questions.json").read_text())
    pool = [d["question"] for d in data] + list(CLI_QUESTIONS)
    seen: list[str] = []
    for q in pool:
        if q not in seen and q != WARMUP_QUESTION:
            seen.append(q)
    if len(seen) < n:
        raise SystemExit(f"only {len(seen)} distinct questions available, {n} needed")
    return seen[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=5, help="concurrent browser sessions (default 5)")
    parser.add_argument("--questions", type=int, default=4, help="questions per session (default 4)")
    parser.add_argument("--only", default="llm,extractive,hf", help="scenarios to run, comma-separated")
    parser.add_argument("--no-write", action="store_true", help="print only, do not append to docs/BENCHMARKS.md")
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM} not found (apt-get install chromium); never a downloaded browser")
    questions = load_questions(args.sessions * args.questions)
    started, machine = now_utc(), machine_summary()

    if DATA_DIR.exists():
        shutil.rmtree(DATA_DIR)
    DATA_DIR.mkdir(parents=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver
    pg = pgserver.get_server(PGDATA, cleanup_mode="stop")
    helpers = Helpers()
    results: list[ScenarioResult] = []
    try:
        with tempfile.TemporaryDirectory(prefix="app-load-") as tmp:
            work = Path(tmp)
            llm_url = start_fake_llm(work, helpers)
            base = product_free_env(DATABASE_URL=pg.get_uri(), ASSISTANT_DATA_DIR=str(DATA_DIR / "app"),
                                    ASSISTANT_SAMPLE_DOCS="1", EMBEDDING_PROVIDER="local")
            llm = {"OPENAI_API_KEY": "test", "OPENAI_BASE_URL": llm_url, "LLM_MODEL": "fake-model",
                   "LLM_MAX_RETRIES": "0"}
            wanted = args.only.split(",")
            scenarios = []
            if "llm" in wanted:
                scenarios.append(Scenario("llm", "scripted LLM, local embedder", {**base, **llm}))
            if "extractive" in wanted:
                scenarios.append(Scenario("extractive", "retrieval-only (no LLM key), local embedder", base))
            if "hf" in wanted:
                hf_url = start_fake_embeddings(work, helpers)
                scenarios.append(Scenario("hf", "scripted LLM, EMBEDDING_PROVIDER=hf (loopback stand-in)",
                                          {**base, **llm, "EMBEDDING_PROVIDER": "hf", "HF_API_URL": hf_url,
                                           "HUGGINGFACE_TOKEN": "test"}))
            for sc in scenarios:
                results.append(run_scenario(sc, work, args, questions, helpers))
    finally:
        helpers.close()
        pg.cleanup()

    body = report(results, args)
    print(body)
    if not args.no_write:
        path = append_report("Chat server under load: memory and time to first token (real browser)", body,
                             started=started, machine=machine)
        print(f"appended to {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
