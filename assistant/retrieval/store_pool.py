"""The store's connection pool: pooled connections that never wait forever.

A statement stuck in the server is cancelled after DB_STATEMENT_TIMEOUT, a server that stops
answering is given up on by the client (`database.WatchedConnection`), and when no pooled
connection comes at once the server itself is asked, so a user hears "unreachable" in a second,
not after DB_CONNECT_TIMEOUT. Errors leave as one-line DatabaseErrors.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import psycopg
from pgvector.psycopg import register_vector
from psycopg_pool import ConnectionPool, PoolTimeout

from assistant.retrieval.database import (
    DatabaseLocation,
    check_answering,
    connect,
    first_line,
    lost_message,
    set_statement_timeout,
    watched_connection,
)
from assistant.retrieval.errors import DatabaseError

if TYPE_CHECKING:
    from assistant.config import Settings

# Connection loss: a request waits this long for a pooled connection before asking the server
# itself whether it is up (so a user hears "unreachable" in a second, not after DB_CONNECT_TIMEOUT)...
POOL_QUICK_WAIT = 0.5
# The pool retries a lost server with a doubling delay (1 s, 2 s, 4 s...); after this many seconds
# it gives up, and the next request starts a fresh series. So while questions come in, it tries
# about once a second, and none waits for an attempt minutes away: with psycopg_pool's default
# (300 s), searches kept failing for 88 s after a 150 s outage had ended.
POOL_RECONNECT_WINDOW = 2.0


class StorePool:
    """The pool of one Store (opened by `open`, which `Store.open` calls after migrating)."""

    def __init__(self, location: DatabaseLocation, settings: Settings) -> None:
        self.location = location
        self.settings = settings
        self._pool: ConnectionPool | None = None
        self._probe_lock = threading.Lock()
        self._probe_at = 0.0
        self._probe_error: str | None = None

    def open(self) -> None:
        """Pooled connections that never wait forever: the server cancels a statement after
        DB_STATEMENT_TIMEOUT, and the client gives up on a server that stops answering
        (`database.WatchedConnection`)."""
        s = self.settings

        def configure(conn: psycopg.Connection) -> None:
            register_vector(conn)
            set_statement_timeout(conn, s.db_statement_timeout)

        self._pool = ConnectionPool(
            self.location.url,
            connection_class=watched_connection(self.location, s.db_statement_timeout),
            min_size=1,
            max_size=s.db_pool_max,
            kwargs={"connect_timeout": s.db_connect_timeout},
            configure=configure,
            check=ConnectionPool.check_connection,
            timeout=s.db_connect_timeout,
            reconnect_timeout=POOL_RECONNECT_WINDOW,
            name="assistant",
            open=True,
        )

    def close(self) -> None:
        """Close the pool (idempotent)."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A pooled connection; an unreachable server or a lost connection becomes a one-line DatabaseError."""
        pool = self._pool
        if pool is None:
            raise DatabaseError("The store is closed")
        conn = self._getconn(pool)
        try:
            # Commit on success, roll back on error. Not `with conn:`, which in psycopg 3 also
            # closes the connection, so the pool would open a new one for every request.
            try:
                yield conn
            except BaseException:
                _roll_back(conn)
                raise
            conn.commit()
        except psycopg.errors.QueryCanceled as err:
            raise DatabaseError(
                f"PostgreSQL at {self.location.description} did not answer in time ({first_line(err)}); try again"
            ) from None
        except psycopg.OperationalError as err:
            raise DatabaseError(lost_message(self.location, err)) from None
        finally:
            pool.putconn(conn)

    def _getconn(self, pool: ConnectionPool) -> psycopg.Connection:
        timeout = float(self.settings.db_connect_timeout)
        quick = min(POOL_QUICK_WAIT, timeout)
        try:
            return pool.getconn(timeout=quick)
        except PoolTimeout:
            pass
        # Nothing pooled at once: every connection is busy, or the server went away and the pool
        # is reconnecting in the background. Ask the server: if it is down, say so now.
        self._check_reachable()
        pool.check()  # it is up: drop pooled connections that died with the old server process
        try:
            return pool.getconn(timeout=timeout - quick)
        except PoolTimeout:
            raise DatabaseError(
                f"Cannot reach PostgreSQL at {self.location.description} (no connection within"
                f" {self.settings.db_connect_timeout} s); check that the server is up"
            ) from None

    def _check_reachable(self) -> None:
        """Raise DatabaseError (with the driver's reason) unless a new connection to the server opens.

        Requests that wait while a probe runs share its result (one probe, not one per request).
        """
        asked = time.monotonic()
        with self._probe_lock:
            if self._probe_at < asked:
                try:
                    check_answering(self.location)  # a frozen server accepts the connection, then never answers
                    connect(self.location, timeout=self.settings.db_connect_timeout, autocommit=True).close()
                    self._probe_error = None
                except DatabaseError as err:
                    self._probe_error = str(err)
                self._probe_at = time.monotonic()
            if self._probe_error is not None:
                raise DatabaseError(self._probe_error)


def _roll_back(conn: psycopg.Connection) -> None:
    """Roll back after an error without hiding it: a connection interrupted mid-command (Ctrl-C
    while a query was being sent) refuses the rollback ("another command is already in
    progress"), so close it instead; the pool replaces closed connections. Letting that error
    escape would turn a Ctrl-C into a "lost the connection" failure."""
    if conn.closed:
        return
    try:
        conn.rollback()
    except psycopg.Error:
        conn.close()
