"""The retry policy of the HTTP embedding providers: one JSON POST until success or a deadline.

503 "model loading" waits the estimated time, 429 honours Retry-After, other 5xx / 408 /
timeouts / connection errors back off exponentially with jitter, all bounded by a deadline
(QUERY_EMBEDDING_DEADLINE for a question someone is waiting on, EMBEDDING_DEADLINE for each
ingest batch); statuses that retrying cannot fix fail at once with the provider's own one-line
message. Error text from a server is squeezed onto one line and stripped of the credentials the
request carried (some servers echo a rejected key).
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from assistant.retrieval.errors import EmbeddingError, hide_url_credentials, public_url, redact_secrets

log = logging.getLogger(__name__)
hide_url_credentials("httpx")  # it logs each request URL at INFO, key-bearing ones too

FALLBACK_HINT = "try again later or use EMBEDDING_PROVIDER=local"

_BACKOFF_BASE = 0.25  # seconds; doubles per failed attempt, with jitter
_BACKOFF_CAP = 8.0
_MIN_ATTEMPT = 0.2  # don't start a request with less time than this left before the deadline


def one_line(text: str, limit: int = 200) -> str:
    """`text` with its whitespace collapsed, cut to `limit` characters."""
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def without_credentials(text: str, response: httpx.Response) -> str:
    """`text` minus the credentials the request carried (bearer token, password or key in the URL):
    some servers echo a rejected key in their error message."""
    request = response.request
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    secrets = [token if scheme.lower() == "bearer" else "", request.url.password or ""]
    secrets += [value for _, value in request.url.params.multi_items() if len(value) >= 8]
    return redact_secrets(text, secrets)


def error_detail(response: httpx.Response) -> str:
    """The server's own error text, if any, squeezed onto one short line (never the API key)."""
    try:
        body = response.json()
    except ValueError:
        return one_line(without_credentials(response.text, response))
    if isinstance(body, dict):
        err = body.get("error", body.get("detail", body.get("message")))
        if isinstance(err, dict):
            err = err.get("message", err)
        if err is not None:
            return one_line(without_credentials(str(err), response))
    return one_line(without_credentials(str(body), response))


def retry_after(response: httpx.Response) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP-date); None if absent or bad."""
    raw = response.headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(raw).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def loading_wait(response: httpx.Response) -> float | None:
    """For a Hugging Face 503 "model is loading" answer, its estimated_time (else None)."""
    try:
        body = response.json()
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    estimate = body.get("estimated_time")
    if isinstance(estimate, (int, float)) and estimate >= 0:
        return float(estimate)
    if "loading" in str(body.get("error", "")).lower():
        return _BACKOFF_BASE * 4
    return None


class RetryingPoster:
    """One httpx.Client posting JSON to one endpoint under the retry/deadline policy above.

    `name` is how the service is called in messages (e.g. "Hugging Face API"), `url_var` the
    variable that sets its URL; `fatal(status, detail)` words a status retrying cannot fix.
    """

    def __init__(self, *, name: str, url: str, url_var: str, token: str | None, timeout: float,
                 fatal: Callable[[int, str], str]) -> None:
        self.name = name
        self.url = url
        self.url_var = url_var
        self.shown_url = public_url(url)  # for messages and logs: no credentials or query string
        self.timeout = timeout
        self._fatal = fatal
        headers = {"Accept": "application/json", "User-Agent": "doc-assistant"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._client = httpx.Client(headers=headers, timeout=timeout)

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()

    def post(self, body: dict[str, Any], limit: tuple[str, float]) -> Any:
        """POST with retries until success, an unfixable error, or the deadline `limit` (name, seconds)."""
        setting, seconds = limit
        start = time.monotonic()
        deadline = start + seconds
        attempt = 0
        while True:
            timeout = max(0.01, min(self.timeout, deadline - time.monotonic()))
            wait: float | None = None
            try:
                response = self._client.post(self.url, json=body, timeout=timeout)
            except httpx.TimeoutException:
                failure = f"timed out (EMBEDDING_TIMEOUT={self.timeout:g} s)"
            except httpx.TransportError as exc:
                failure = f"unreachable at {self.shown_url} ({type(exc).__name__}: {one_line(str(exc), 80)})"
            else:
                status = response.status_code
                if 200 <= status < 300:
                    return self._json(response)
                if status == 503 and (loading := loading_wait(response)) is not None:
                    failure, wait = "model still loading (503)", loading
                elif status == 429:
                    failure, wait = "rate-limited (429)", retry_after(response)
                    if wait is not None and wait > deadline - time.monotonic() - _MIN_ATTEMPT:
                        raise EmbeddingError(
                            f"{self.name} rate-limited (429) and asks to wait {wait:g} s, more than is left "
                            f"of {setting}={seconds:g} s; {FALLBACK_HINT}",
                            retryable=True,
                        )
                elif status >= 500 or status == 408:
                    detail = error_detail(response)
                    failure = f"failing with HTTP {status}" + (f" ({one_line(detail, 80)})" if detail else "")
                else:
                    raise EmbeddingError(self._fatal(status, error_detail(response)))
            if wait is None:
                wait = min(_BACKOFF_CAP, _BACKOFF_BASE * 2**attempt) * random.uniform(0.5, 1.0)
            # Shorten a wait that would run past the deadline: the estimate may be pessimistic.
            wait = min(wait, deadline - time.monotonic() - _MIN_ATTEMPT)
            if wait < 0:
                raise EmbeddingError(
                    f"{self.name} {failure} for {time.monotonic() - start:.1f} s "
                    f"({setting}={seconds:g} s); {FALLBACK_HINT}",
                    retryable=True,
                )
            log.info("%s %s; retrying in %.2f s", self.name, failure, wait)
            time.sleep(wait)
            attempt += 1

    def _json(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            kind = response.headers.get("content-type", "no content type")
            raise EmbeddingError(
                f"{self.name} answered HTTP {response.status_code} with a non-JSON body ({kind}: "
                f"{one_line(without_credentials(response.text, response), 60)!r}); check {self.url_var}"
            ) from None
