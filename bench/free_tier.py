"""Cold start on Render's free tier: the chat server under a CPU quota of 0.1 (and 0.5) CPU.

Render's free web service gets 0.1 CPU and sleeps after 15 idle minutes, so the next visitor waits
for a cold start. This script reproduces that on one machine (root needed for the cgroup):

1. PostgreSQL runs OUTSIDE the quota, as Render's separate database does: the embedded server
   (`pgserver`, data in bench/.cache/free_tier/) or `--database-url`. It is prepared once, outside
   the quota, with the sample corpus indexed (from the shipped vectors) and the chat tables made.
2. The chat server starts exactly as `chainlit run assistant/app.py --headless` (Render's start
   command) in its own app root, inside a new cgroup whose CPU quota is `--cpus` (cgroup v2
   `cpu.max` where the cpu controller is on the unified hierarchy, else cgroup v1
   `cpu.cfs_quota_us` / `cpu.cfs_period_us`), with DATABASE_URL and ASSISTANT_SAMPLE_DOCS=1.
   "With an LLM" points OPENAI_BASE_URL at the loopback stand-in (tests/fakes/llm_server.py,
   running in this process, outside the quota).
3. Measured from the moment the process is spawned: the port accepting TCP connections, the first
   `GET /healthz` 200 (database answered and embedder checked), then one chat session over
   Chainlit's Socket.IO (tests/fakes/socket_chat.py): time to open it (on_chat_start) and the
   first answer's time to first token and to the end of the turn. Also the server's CPU seconds
   at the port and at /healthz 200 (independent of the quota and of the machine's load, so the
   fairest number to compare, though it grows on an overloaded machine), and its peak RSS (kernel high-water mark).
4. The Chainlit floor (`--floor`, on by default): a bare `chainlit run` of an app with one
   handler and no imports of ours, under the same quota: the time and CPU before its port opens.

`--code DIR` runs the app from another checkout (e.g. `git archive 3d68f81 | tar -x -C DIR`), and
`--compare DIR=LABEL` adds a second one, measured interleaved with the first so both see the same
machine load (this machine is shared). Several runs per configuration give medians.

Usage: nice -n 10 python -m bench.free_tier [--cpus 0.1,0.5] [--runs 2] [--code DIR] [--label TEXT]
       [--compare DIR=LABEL] [--database-url URL] [--no-floor] [--no-write] [--logs DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from bench._common import (
    CACHE,
    REPO,
    append_report,
    load_average,
    machine_summary,
    md_table,
    median,
    now_utc,
    product_free_env,
    vm_hwm,
)

DATA_DIR = CACHE / "free_tier"
PGDATA = DATA_DIR / "pgdata"
PERIOD_US = 100_000  # the CFS period: Render-like quotas are "x ms of CPU per 100 ms"
QUESTION = "How do I deploy the assistant on Render?"
BYTECODE = {True: "compiled by the build step (render.yaml compileall)", False: "none (compiled at every start)"}
TIMEOUT = 240.0  # seconds for one start at 0.1 CPU before giving up

EMPTY_APP = '''"""The smallest Chainlit app: the floor of a cold start with Chainlit."""
import chainlit as cl


@cl.on_message
async def on_message(message: cl.Message) -> None:
    await cl.Message(content="ok").send()
'''


# -- the CPU quota -------------------------------------------------------------------------------


class CpuQuota:
    """A fresh cgroup limited to `cpus` CPUs; `wrap(cmd)` starts a command inside it."""

    def __init__(self, cpus: float, name: str) -> None:
        self.cpus = cpus
        quota = max(1000, int(cpus * PERIOD_US))
        v2 = self._v2_root()
        if v2 is not None:
            self.kind = "cgroup v2 cpu.max"
            self.path = v2 / name
            self.path.mkdir(exist_ok=True)
            (self.path / "cpu.max").write_text(f"{quota} {PERIOD_US}")
        else:
            v1 = self._v1_root()
            if v1 is None:
                raise SystemExit("no cgroup with a CPU controller (cgroup v2 cpu.max or v1 cpu.cfs_quota_us)")
            self.kind = "cgroup v1 cpu.cfs_quota_us"
            self.path = v1 / name
            self.path.mkdir(exist_ok=True)
            (self.path / "cpu.cfs_period_us").write_text(str(PERIOD_US))
            (self.path / "cpu.cfs_quota_us").write_text(str(quota))
        self.procs = self.path / "cgroup.procs"

    @classmethod
    def describe(cls) -> str:
        """Which mechanism this machine offers."""
        return "cgroup v2 cpu.max" if cls._v2_root() is not None else "cgroup v1 cpu.cfs_quota_us"

    @staticmethod
    def _v2_root() -> Path | None:
        for root in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified")):
            controllers = root / "cgroup.controllers"
            if controllers.exists() and "cpu" in controllers.read_text().split():
                control = root / "cgroup.subtree_control"
                if "cpu" not in control.read_text().split():
                    try:
                        control.write_text("+cpu")
                    except OSError:
                        continue
                return root
        return None

    @staticmethod
    def _v1_root() -> Path | None:
        for root in (Path("/sys/fs/cgroup/cpu"), Path("/sys/fs/cgroup/cpu,cpuacct")):
            if (root / "cpu.cfs_quota_us").exists():
                return root
        return None

    def wrap(self, cmd: list[str]) -> list[str]:
        """`cmd` run by a shell that first moves itself into the group (so no instruction runs outside)."""
        return ["/bin/sh", "-c", f'echo $$ > "{self.procs}" && exec "$@"', "sh", *cmd]

    def throttled_s(self) -> float:
        """Seconds the group spent throttled (cpu.stat), for the record."""
        try:
            stat = dict(line.split() for line in (self.path / "cpu.stat").read_text().splitlines())
        except (OSError, ValueError):
            return float("nan")
        if "throttled_usec" in stat:
            return int(stat["throttled_usec"]) / 1e6
        return int(stat.get("throttled_time", 0)) / 1e9

    def remove(self) -> None:
        for _ in range(50):
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.1)


# -- one cold start ------------------------------------------------------------------------------


@dataclass
class Start:
    """What one cold start measured (seconds from spawning the process; None: never happened)."""

    port_s: float | None = None
    healthz_s: float | None = None
    cpu_at_port: float | None = None
    cpu_at_healthz: float | None = None
    session_s: float | None = None  # socket opened and on_chat_start done
    ttft_s: float | None = None
    answer_s: float | None = None
    peak_rss: int = 0
    throttled_s: float = float("nan")
    load: str = ""
    errors: list[str] = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def tree_cpu(proc: psutil.Process) -> float:
    """CPU seconds (user + system) of a process and its live children."""
    total = 0.0
    for p in (proc, *proc.children(recursive=True)):
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            total += t.user + t.system
    return total


def app_root(work: Path, code: Path, name: str) -> Path:
    """An app root holding links to the checkout's .chainlit/, public/ (and chainlit*.md copies; Chainlit deletes
    <root>/.files on exit, so each server gets its own)."""
    root = work / f"{name}-root"
    root.mkdir()
    for item in (".chainlit", "public"):
        (root / item).symlink_to(code / item)
    for readme in code.glob("chainlit*.md"):  # copies: Chainlit ignores a translation outside the root
        shutil.copyfile(readme, root / readme.name)
    return root


@contextlib.contextmanager
def server(cmd: list[str], quota: CpuQuota, root: Path, env: dict[str, str], log: Path) -> Iterator[psutil.Popen]:
    proc = psutil.Popen(quota.wrap(cmd), cwd=root, env={**env, "CHAINLIT_APP_ROOT": str(root)},
                        stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except psutil.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def cold_start(app: Path, code: Path, cpus: float, env: dict[str, str], work: Path, name: str,
               *, chat: bool = True) -> Start:
    """Start `chainlit run app` under the quota and time it; `chat`: also wait for /healthz and ask."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    root = app_root(work, code, name)
    quota = CpuQuota(cpus, f"doc-assistant-free-tier-{os.getpid()}-{name}")
    log = work / f"{name}.log"
    cmd = [sys.executable, "-m", "chainlit", "run", str(app), "--headless", "--host", "127.0.0.1", "--port", str(port)]
    result = Start()
    try:
        t0 = time.perf_counter()
        with server(cmd, quota, root, {**env, "PYTHONPATH": str(code)}, log) as proc:  # `assistant` from `code`
            peak = {"rss": 0}
            stop = threading.Event()

            def sample() -> None:
                while not stop.is_set():
                    with contextlib.suppress(psutil.Error):
                        rss = sum(p.memory_info().rss for p in (proc, *proc.children(recursive=True)))
                        peak["rss"] = max(peak["rss"], rss)
                    stop.wait(0.05)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            try:
                deadline = t0 + TIMEOUT
                while time.perf_counter() < deadline and proc.poll() is None:
                    if port_open(port):
                        result.port_s = time.perf_counter() - t0
                        result.cpu_at_port = tree_cpu(proc)
                        break
                    time.sleep(0.05)
                if chat and result.port_s is not None:
                    wait_healthz(url, proc, result, t0, deadline)
                if chat and result.healthz_s is not None:
                    asyncio.run(first_answer(url, result, t0))
                with contextlib.suppress(psutil.Error, OSError):
                    for p in (proc, *proc.children(recursive=True)):
                        if p.name().startswith("python"):
                            result.peak_rss = max(result.peak_rss, vm_hwm(p.pid))
            finally:
                stop.set()
                sampler.join()
                result.peak_rss = max(result.peak_rss, peak["rss"])
                result.throttled_s = quota.throttled_s()
                result.load = load_average().split(" (")[0]
            if result.port_s is None:
                result.errors.append("the port never opened")
            elif chat and result.healthz_s is None:
                result.errors.append("/healthz never answered 200")
    finally:
        quota.remove()
    if result.errors:
        tail = log.read_text(errors="replace")[-1500:]
        print(f"[{name}] {'; '.join(result.errors)}; log tail:\n{tail}", file=sys.stderr)
    return result


def wait_healthz(url: str, proc: psutil.Popen, result: Start, t0: float, deadline: float) -> None:
    """Poll /healthz every 250 ms (each poll costs the server a little CPU under the quota)."""
    with httpx.Client(timeout=30) as client:
        while time.perf_counter() < deadline and proc.poll() is None:
            with contextlib.suppress(httpx.HTTPError):
                if client.get(url + "/healthz").status_code == 200:
                    result.healthz_s = time.perf_counter() - t0
                    result.cpu_at_healthz = tree_cpu(proc)
                    return
            time.sleep(0.25)


async def first_answer(url: str, result: Start, t0: float) -> None:
    from tests.fakes.socket_chat import ChatProtocolError, ChatSession

    chat = ChatSession(url)
    try:
        opened = time.perf_counter()
        await chat.connect(timeout=120)
        result.session_s = time.perf_counter() - opened
        reply = await chat.ask(QUESTION, timeout=120)
        if reply.ttft_ms is not None:
            result.ttft_s = reply.ttft_ms / 1000
        if reply.total_ms is not None:
            result.answer_s = reply.total_ms / 1000
        if not reply.ok:
            result.errors.append(f"first answer failed: {reply.errors or reply.events[-8:]}")
    except ChatProtocolError as err:
        result.errors.append(str(err))
    finally:
        with contextlib.suppress(Exception):
            await chat.close()


# -- the prepared database --------------------------------------------------------------------------


def build_like_render(code: Path) -> bool:
    """Byte-compile the app as the checkout's render.yaml build does (if it does): a free instance
    starts from the build's files at every wake-up, and this machine sets PYTHONDONTWRITEBYTECODE."""
    blueprint = code / "render.yaml"
    if not blueprint.exists() or "compileall" not in blueprint.read_text():
        return False
    subprocess.run([sys.executable, "-m", "compileall", "-q", "assistant"], cwd=code, check=True,
                   env={**os.environ, "PYTHONDONTWRITEBYTECODE": ""})
    return True


def prepare_database(url: str, code: Path, env: dict[str, str]) -> None:
    """Index the sample corpus and create the chat tables, outside the quota, with the code under test."""
    script = ("from assistant.retrieval import open_retriever\n"
              "try:\n    from assistant.ui.datalayer import ensure_chat_schema\n"
              "except ImportError:  # a checkout from before the data layer moved under ui/\n"
              "    from assistant.datalayer import ensure_chat_schema\n"
              "r = open_retriever(announce=False)\n"
              "ensure_chat_schema(r.store)\n"
              "print(r.store.document_count(), 'documents ready')\n"
              "r.store.close()\n")
    subprocess.run([sys.executable, "-c", script], cwd=code, env={**env, "DATABASE_URL": url, "PYTHONPATH": str(code)},
                   check=True)


@contextlib.contextmanager
def database(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver
    pg = pgserver.get_server(PGDATA, cleanup_mode="stop")
    try:
        yield pg.get_uri()
    finally:
        pg.cleanup()


# -- the report ------------------------------------------------------------------------------------


def fmt(values: list[float | None], unit: str = "s", digits: int = 1) -> str:
    got = [v for v in values if v is not None]
    if not got:
        return "-"
    text = f"{median(got):.{digits}f} {unit}"
    if len(got) > 1:
        text += f" ({min(got):.{digits}f}-{max(got):.{digits}f})"
    return text + ("" if len(got) == len(values) else f" [{len(values) - len(got)} failed]")


def report(rows: list[tuple[str, str, float, list[Start]]], floor: list[tuple[float, list[Start]]],
           args: argparse.Namespace, quota_kind: str, compiled: dict[str, bool]) -> str:
    table = []
    for code, config, cpus, starts in rows:
        table.append([
            f"{cpus:g}", code, config,
            fmt([s.port_s for s in starts]), fmt([s.healthz_s for s in starts]),
            fmt([s.cpu_at_port for s in starts], "s", 2), fmt([s.cpu_at_healthz for s in starts], "s", 2),
            fmt([s.session_s for s in starts], "s", 2),
            fmt([None if s.ttft_s is None else s.ttft_s * 1000 for s in starts], "ms", 0),
            fmt([None if s.peak_rss == 0 else s.peak_rss / 2**20 for s in starts], "MiB", 0),
            " / ".join(s.load for s in starts),
        ])
    body = [
        f"Quota: {quota_kind}, period {PERIOD_US // 1000} ms; PostgreSQL outside it"
        f" ({'DATABASE_URL' if args.database_url else 'embedded pgserver'}, sample corpus indexed beforehand)."
        " App bytecode: " + "; ".join(f"{label}: {BYTECODE[c]}" for label, c in compiled.items()) + "."
        " Checkouts and the floor run interleaved (run 1 of each, then run 2...), so they share the machine's load."
        f" {args.runs} cold start(s) per row: median (min-max). Times from spawning"
        " `chainlit run assistant/app.py --headless`; CPU = the server's user+system seconds at that moment"
        " (hardly depends on the quota, but grows when the machine is overloaded). First answer over Chainlit's socket:"
        f" {QUESTION!r}; session = socket opened and on_chat_start done.",
        "",
        md_table(["CPU", "code", "configuration", "port open", "/healthz 200", "CPU at port", "CPU at /healthz",
                  "session", "first answer TTFT", "peak RSS", "load avg (1 min) per run"],
                 table, "rllrrrrrrrl"),
    ]
    if floor:
        frows = [[f"{cpus:g}", fmt([s.port_s for s in starts]), fmt([s.cpu_at_port for s in starts], "s", 2),
                  fmt([None if s.peak_rss == 0 else s.peak_rss / 2**20 for s in starts], "MiB", 0)]
                 for cpus, starts in floor]
        body += ["", "The Chainlit floor: a bare `chainlit run` of a one-handler app (no code of ours),"
                 " same quota:", "",
                 md_table(["CPU", "port open", "CPU at port", "peak RSS"], frows)]
    return "\n".join(body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpus", default="0.1,0.5", help="CPU quotas to test, comma-separated (default 0.1,0.5)")
    parser.add_argument("--runs", type=int, default=2, help="cold starts per configuration (default 2)")
    parser.add_argument("--code", type=Path, default=REPO,
                        help="the checkout whose assistant/app.py runs (default: this one)")
    parser.add_argument("--label", default=None, help="what the code is, for the report (default: the checkout path)")
    parser.add_argument("--compare", default=None, metavar="DIR[=LABEL]",
                        help="a second checkout to measure interleaved with the first (e.g. the code before a change)")
    parser.add_argument("--database-url", default=None, help="use this PostgreSQL instead of the embedded one")
    parser.add_argument("--only", default="extractive,llm", help="configurations: extractive,llm")
    parser.add_argument("--logs", type=Path, default=None, help="keep the servers' logs in this folder")
    parser.add_argument("--no-floor", dest="floor", action="store_false", help="skip the bare-Chainlit floor")
    parser.add_argument("--no-write", action="store_true", help="print only, do not append to docs/BENCHMARKS.md")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("creating a cgroup needs root")
    checkouts = [("this checkout" if args.code.resolve() == REPO else str(args.code.resolve()), args.code.resolve())]
    if args.label:
        checkouts[0] = (args.label, checkouts[0][1])
    if args.compare:
        path, _, label = args.compare.partition("=")
        checkouts.append((label or path, Path(path).resolve()))
    cpus_list = [float(c) for c in args.cpus.split(",")]
    started, machine = now_utc(), machine_summary(args.database_url)
    from tests.fakes.llm_server import FakeLLMServer

    results: dict[tuple[str, str, float], list[Start]] = {}
    floor: dict[float, list[Start]] = {}
    compiled: dict[str, bool] = {}
    with database(args.database_url) as db_url, FakeLLMServer() as llm, \
            tempfile.TemporaryDirectory(prefix="free-tier-") as tmp:
        work = Path(tmp)
        base = product_free_env(DATABASE_URL=db_url, ASSISTANT_SAMPLE_DOCS="1", EMBEDDING_PROVIDER="local",
                                ASSISTANT_DATA_DIR=str(work / "data"))
        base.pop("PYTHONPATH", None)
        for label, code in checkouts:
            compiled[label] = build_like_render(code)
            prepare_database(db_url, code, base)
        llm_env = {"OPENAI_API_KEY": "test", "OPENAI_BASE_URL": llm.base_url, "LLM_MODEL": "fake-model",
                   "LLM_MAX_RETRIES": "0"}
        configs = {"extractive": ("no LLM (extractive)", base), "llm": ("LLM (loopback stand-in)", {**base, **llm_env})}
        wanted = [c for c in args.only.split(",") if c in configs]
        empty = work / "empty_app.py"
        empty.write_text(EMPTY_APP)
        n = 0
        for cpus in cpus_list:
            for run in range(args.runs):  # interleaved, so every checkout and the floor see the same load
                for index, (label, code) in enumerate(checkouts):
                    for key in wanted:
                        n += 1
                        s = cold_start(code / "assistant" / "app.py", code, cpus, configs[key][1], work,
                                       f"{index}-{key}-{cpus:g}-{run}")
                        print(f"[{cpus:g} CPU, {label}, {key}, run {run + 1}] port {s.port_s} s, /healthz"
                              f" {s.healthz_s} s, cpu {s.cpu_at_port}/{s.cpu_at_healthz} s, ttft {s.ttft_s} s,"
                              f" rss {s.peak_rss >> 20} MiB, load {s.load} {s.errors or ''}", file=sys.stderr)
                        results.setdefault((label, configs[key][0], cpus), []).append(s)
                if args.floor:
                    s = cold_start(empty, checkouts[0][1], cpus, base, work, f"floor-{cpus:g}-{run}", chat=False)
                    print(f"[{cpus:g} CPU, floor, run {run + 1}] port {s.port_s} s, cpu {s.cpu_at_port} s",
                          file=sys.stderr)
                    floor.setdefault(cpus, []).append(s)
        if args.logs:
            args.logs.mkdir(parents=True, exist_ok=True)
            for log in work.glob("*.log"):
                shutil.copy(log, args.logs / log.name)
    order = [label for label, _ in checkouts]
    rows = sorted(results.items(), key=lambda item: (item[0][2], item[0][1], order.index(item[0][0])))
    body = report([(label, config, cpus, starts) for (label, config, cpus), starts in rows],
                  sorted(floor.items()), args, CpuQuota.describe(), compiled)
    print(body)
    if not args.no_write:
        path = append_report("Free tier: cold start under a CPU quota", body, started=started, machine=machine)
        print(f"appended to {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
