"""Shared helpers for the benchmark scripts: statistics, Markdown tables, machine summary,
memory sampling of a child process and of the embedded PostgreSQL, and the report file.

Benchmarks run as modules from the repository root (`python -m bench.ingest ...`), so `assistant`,
`bench` and `tests` import from the checkout with no import-path edits; their child processes do the
same (`python -m bench._search_worker`, working directory the repository root, see `bench_module`).

Benchmarks are not tests: they print what they measured and append it to docs/BENCHMARKS.md
with the machine and the exact command, so a reader can judge and reproduce the figures.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / "bench" / ".cache"
REPORT = REPO / "docs" / "BENCHMARKS.md"

REPORT_INTRO = """# Benchmarks

Measured by the scripts in `bench/` (see each script's docstring). Every section below was
appended by one run and records the date, the machine, the commit and the exact command, so
figures can be reproduced and compared. Timings are medians (and p95 where shown) of one run;
compare ratios within a section rather than absolute numbers across sections: the machines are
small, shared and noisy (other jobs, such as test suites, often run at the same time, see the
load average noted with each run). Memory is resident set size (RSS); for the embedded
PostgreSQL, which runs as separate processes sharing memory, the proportional set size (PSS)
sum is the fairer total. Commands run from the repository root: `python -m bench.NAME ...`.
"""


# -- statistics --------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100) of a non-empty sequence."""
    if not values:
        return float("nan")
    data = sorted(values)
    pos = (len(data) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50.0)


def mib(n_bytes: float) -> str:
    return f"{n_bytes / 2**20:.0f} MiB"


# -- Markdown --------------------------------------------------------------------------------


def md_table(headers: Sequence[str], rows: Sequence[Sequence[object]], align: str | None = None) -> str:
    """A GitHub Markdown table; `align` is one char per column: l, r or c (default: l then r)."""
    align = align or "l" + "r" * (len(headers) - 1)
    marks = {"l": ":---", "r": "---:", "c": ":---:"}
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(marks[a] for a in align) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# -- machine and report --------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def git_revision() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "assistant"],
                               cwd=REPO, capture_output=True, text=True).stdout.strip()
        return rev + (" (assistant/ has uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def load_average() -> str:
    load = os.getloadavg()
    return f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1 / 5 / 15 min)"


def postgres_versions(database_url: str) -> str:
    """The PostgreSQL and pgvector versions of the server a benchmark uses (the figures depend on both)."""
    import psycopg

    try:
        with psycopg.connect(database_url, connect_timeout=5) as conn:
            server, vector = conn.execute(
                "SELECT current_setting('server_version'),"
                " (SELECT default_version FROM pg_available_extensions WHERE name = 'vector')").fetchone()
    except psycopg.Error as err:
        return f"PostgreSQL version unknown ({str(err).strip().splitlines()[0]})"
    return f"PostgreSQL {server.split()[0]}, pgvector {vector or 'not installed'}"


def machine_summary(database_url: str | None = None) -> str:
    """CPUs, RAM, Python, kernel and load; with `database_url`, the PostgreSQL and pgvector versions."""
    db = f", {postgres_versions(database_url)}" if database_url else ""
    return (f"{os.cpu_count()} CPUs ({cpu_model()}), {mib(psutil.virtual_memory().total)} RAM,"
            f" Python {platform.python_version()}, {platform.system()} {platform.release()}{db};"
            f" load average at the start {load_average()}")


def command_line() -> str:
    """The command that ran this script: `python -m bench.x ARGS`, or the script's path relative to the root."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name:
        return shlex.join(["python", "-m", spec.name, *sys.argv[1:]])
    script = Path(sys.argv[0]).resolve()
    try:
        shown = str(script.relative_to(REPO))
    except ValueError:
        shown = str(script)
    return shlex.join(["python", shown, *sys.argv[1:]])


def append_report(title: str, body: str, *, started: str, machine: str) -> Path:
    """Append one section (title, date, machine, commit, command, body) to docs/BENCHMARKS.md."""
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    if not REPORT.exists():
        REPORT.write_text(REPORT_INTRO, encoding="utf-8")
    section = (
        f"\n## {title}, {started}\n\n"
        f"- Machine: {machine}\n"
        f"- Load average when the run ended: {load_average()}\n"
        f"- Commit: {git_revision()}\n"
        f"- Reproduce (from the repository root): `{command_line()}`\n\n"
        f"{body.strip()}\n"
    )
    with REPORT.open("a", encoding="utf-8") as f:
        f.write(section)
    return REPORT


def now_utc() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


# -- processes and memory ------------------------------------------------------------------------


def bench_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment for a product subprocess: embedded PostgreSQL in `data_dir`, no .env surprises."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["ASSISTANT_DATA_DIR"] = str(data_dir)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def bench_module(module: str, *args: str) -> list[str]:
    """The command that runs `bench/<module>.py` in a child interpreter, as a module of the `bench`
    package: start it with the repository root as working directory (run_measured's default), or
    under `source_env` for another commit's `assistant`."""
    return [sys.executable, "-m", f"bench.{module}", *args]


def source_env(env: dict[str, str], source_root: Path) -> dict[str, str]:
    """`env` for a child started in `source_root` (a folder holding an `assistant` package, e.g. an
    older commit's copy) that imports that `assistant` first and `bench`/`tests` from this checkout:
    `python -m` puts the working directory first on the path, PYTHONPATH follows."""
    return {**env, "PYTHONPATH": os.pathsep.join([str(source_root), str(REPO)])}


def product_free_env(**extra: str) -> dict[str, str]:
    """os.environ without any of the product's settings (no .env surprises), plus `extra`."""
    from assistant.config import Settings

    env = {k: v for k, v in os.environ.items() if k not in Settings.ENV.values() and k != "HF_TOKEN"}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def vm_hwm(pid: int) -> int:
    """The kernel's peak RSS of a live process (bytes)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def postgres_processes(pgdata: Path) -> list[psutil.Process]:
    """The embedded server's postmaster (from postmaster.pid) and all its children."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except (OSError, ValueError, psutil.Error):
        return []


def postgres_memory(pgdata: Path) -> tuple[int, int, int]:
    """(process count, RSS sum, PSS sum) of the embedded server right now (bytes)."""
    rss = pss = n = 0
    for proc in postgres_processes(pgdata):
        try:
            info = proc.memory_full_info()
        except psutil.Error:
            continue
        n += 1
        rss += info.rss
        pss += getattr(info, "pss", info.rss)
    return n, rss, pss


@dataclass
class Peaks:
    child_rss: int = 0  # sampled peak RSS of the watched process
    pg_rss: int = 0  # peak of the postgres processes' RSS sum (counts shared memory once per process)
    pg_pss: int = 0  # peak of their PSS sum (shared pages divided among the sharers)
    pg_procs: int = 0  # most postgres processes seen at once
    samples: int = 0


class MemorySampler(threading.Thread):
    """Polls one process's RSS every `interval` s and the embedded server every `pg_interval` s."""

    def __init__(self, pid: int | None, pgdata: Path | None, interval: float = 0.005,
                 pg_interval: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid) if pid else None
        self.pgdata = pgdata
        self.interval, self.pg_interval = interval, pg_interval
        self.peaks = Peaks()
        self._stop_event = threading.Event()

    def run(self) -> None:
        next_pg = 0.0
        while not self._stop_event.is_set():
            if self.proc is not None:
                try:
                    self.peaks.child_rss = max(self.peaks.child_rss, self.proc.memory_info().rss)
                except psutil.Error:
                    self.proc = None
            now = time.monotonic()
            if self.pgdata is not None and now >= next_pg:
                next_pg = now + self.pg_interval
                n, rss, pss = postgres_memory(self.pgdata)
                p = self.peaks
                p.pg_procs, p.pg_rss, p.pg_pss = max(p.pg_procs, n), max(p.pg_rss, rss), max(p.pg_pss, pss)
            self.peaks.samples += 1
            self._stop_event.wait(self.interval)

    def stop(self) -> Peaks:
        self._stop_event.set()
        self.join()
        return self.peaks


@dataclass
class ChildRun:
    returncode: int
    wall_s: float
    maxrss: int  # bytes, kernel high-water mark of the child (wait4 ru_maxrss)
    peaks: Peaks
    stdout: str
    stderr: str


def run_measured(cmd: Sequence[str], env: dict[str, str], pgdata: Path | None, *,
                 cwd: Path = REPO) -> ChildRun:
    """Run a command, sampling its memory and the embedded server's; exact peak RSS from wait4."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(list(cmd), env=env, cwd=cwd, stdout=out, stderr=err)
        sampler = MemorySampler(proc.pid, pgdata)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        peaks = sampler.stop()
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    return ChildRun(proc.returncode, wall, usage.ru_maxrss * 1024, peaks, stdout, stderr)
