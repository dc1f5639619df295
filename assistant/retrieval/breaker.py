"""A circuit breaker for the query-embedding provider: stop calling it while it is down.

Without one, every question during a provider outage pays the whole retry budget
(QUERY_EMBEDDING_DEADLINE, 5 s by default) before search falls back to full-text. With it, after
EMBEDDING_BREAKER_FAILURES failed calls in a row the breaker *opens*: calls fail at once with
`CircuitOpenError` (search goes straight to full-text, marked degraded) and the provider sees no
traffic. After EMBEDDING_BREAKER_COOLDOWN seconds it is *half-open*: exactly one call goes through
as a probe while the others keep failing fast; a success *closes* it, a failure opens it again
for another cool-down.

State changes are logged once each (not per request). All state sits behind one lock, held only
for bookkeeping and never during the call itself, so the breaker is safe from many threads and
from the async search path (which embeds in worker threads).

Only stdlib here: the retrieval package must stay light.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from assistant.retrieval.errors import CircuitOpenError, EmbeddingError

log = logging.getLogger(__name__)

T = TypeVar("T")

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half-open"


def _times(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


class CircuitBreaker:
    """Counts consecutive `EmbeddingError`s of calls made through `call()`; see the module docstring.

    `failures=0` disables it (every call goes through). `clock` is injectable for tests.
    """

    def __init__(self, name: str, *, failures: int, cooldown: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if failures < 0 or cooldown < 0:
            raise ValueError("failures and cooldown must be >= 0")
        self.name = name
        self.threshold = failures
        self.cooldown = cooldown
        self.clock = clock
        self._lock = threading.Lock()
        self._state = CLOSED
        self._consecutive = 0  # failed calls in a row
        self._opened_at = 0.0
        self._outage_started = 0.0
        self._probing = False  # a half-open trial call is in flight
        self._last_error = ""
        self.rejected = 0  # calls refused without reaching the provider (for status and tests)

    @property
    def state(self) -> str:
        """closed | open | half-open (open turns half-open once the cool-down is over)."""
        with self._lock:
            if self._state == OPEN and self.clock() - self._opened_at >= self.cooldown:
                return HALF_OPEN
            return self._state

    def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` unless the breaker is open; record its outcome. Raises CircuitOpenError when open."""
        if not self.threshold:
            return fn()
        probe = self._admit()
        try:
            result = fn()
        except EmbeddingError as err:
            self._failed(err, probe)
            raise
        except BaseException:
            # Not a provider failure (a bug, an interrupt): free the probe slot, change nothing else.
            if probe:
                with self._lock:
                    self._probing = False
            raise
        self._succeeded(probe)
        return result

    def reset(self) -> None:
        """Close the breaker and forget past failures (e.g. after the configuration changed)."""
        with self._lock:
            self._state, self._consecutive, self._probing = CLOSED, 0, False

    # -- bookkeeping (under the lock, never around the call) --------------------------------

    def _admit(self) -> bool:
        """Let a call through (True when it is the half-open probe) or raise CircuitOpenError."""
        with self._lock:
            if self._state == CLOSED:
                return False
            now = self.clock()
            if self._state == OPEN and now - self._opened_at >= self.cooldown:
                self._state = HALF_OPEN
                self._probing = False
            if self._state == HALF_OPEN and not self._probing:
                self._probing = True
                log.info("%s: trying it again after %.0f s (circuit half-open)", self.name, now - self._opened_at)
                return True
            self.rejected += 1
            if self._state == OPEN:
                when = f"next try in {math.ceil(self.cooldown - (now - self._opened_at))} s"
            else:
                when = "a trial call is under way"
            raise CircuitOpenError(
                f"{self.name} is paused after {_times(self._consecutive, 'failure')} in a row, {when}; "
                f"last error: {self._last_error}",
                retryable=True,
            )

    def _failed(self, err: EmbeddingError, probe: bool) -> None:
        with self._lock:
            self._consecutive += 1
            text = " ".join(str(err).split())
            self._last_error = text.removeprefix(self.name + " ")[:160]  # the name is in our own message
            now = self.clock()
            if probe:
                self._probing = False
                self._state, self._opened_at = OPEN, now
                log.info("%s still failing (%s); next try in %g s", self.name, self._last_error, self.cooldown)
            elif self._state == CLOSED and self._consecutive >= self.threshold:
                self._state, self._opened_at, self._outage_started = OPEN, now, now
                log.warning(
                    "%s failed %s in a row (last: %s); not calling it for %g s, searches use full-text only "
                    "(circuit open)", self.name, _times(self._consecutive, "time"), self._last_error, self.cooldown,
                )

    def _succeeded(self, probe: bool) -> None:
        with self._lock:
            if probe or self._state != CLOSED:
                log.warning("%s works again after %.0f s; semantic search is back (circuit closed)",
                            self.name, self.clock() - self._outage_started)
            self._state, self._consecutive, self._probing = CLOSED, 0, False

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.name!r}, state={self.state}, failures={self._consecutive}/{self.threshold})"
