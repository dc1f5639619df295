"""A small real OpenAI-compatible chat server for tests: stdlib HTTP on 127.0.0.1, in a thread.

The real `openai.AsyncOpenAI` client talks to it over loopback, so retries, timeouts, SSE parsing
and error mapping are exercised end to end. Routes:

    POST /v1/chat/completions (and /chat/completions)   stream=true: SSE chat.completion.chunk events
    GET  /v1/models                                      one model, "fake-model"
    POST /_fake/script   {"actions": [["answer", "..."], ["status", 429]]}   (for other processes)
    GET  /_fake/requests                                 what was received, as JSON
    POST /_fake/reset                                    clear the script and the records

Each chat request consumes one scripted action (then the default applies):
    ("answer", text | [chunks], delay=0.0)   answer with that text; a str is split like a tokenizer
                                             would ("[1]" arrives as "[", "1", "]"); delay: seconds
                                             before each chunk, or a list (one per chunk)
    ("status", code, message=None, headers=None)   an OpenAI-style error; 429/5xx carry
                                             `retry-after-ms: 10` unless headers say otherwise
    ("stall", seconds)                       wait, then answer by default (forces client timeouts)
    ("cut", text | [chunks])                 stream some chunks, then drop the connection (no [DONE])
    ("length", text | [chunks])              stream, ending with finish_reason "length"
    ("endless", piece, interval=0.0)         stream `piece` again and again, every `interval` seconds,
                                             never finishing (ignores max_tokens) until the client leaves
    ("badsse", text)                         stream `text`, then an event whose data is not JSON
    ("error_event", text, message)           stream `text`, then an OpenAI-style {"error": {message}} event
    ("condense", text)                       the reply to a (non-streamed) condense request
    ("drop",)                                close the connection without any response
    ("empty_stream",)                        HTTP 200, an event-stream with no events at all
    ("role_only",)                           the role chunk, then the connection drops
Like llama.cpp's server (`llama_cpp.server`), with `server.n_ctx` set a prompt of that many tokens
or more (counted as `count_tokens` does) gets HTTP 200 and an empty stream when streamed, and
400 `context_length_exceeded` naming the window when not; the script is not consumed then.
`server.tokenizer = True` adds llama-cpp-python's `POST /extras/tokenize/count` (counts times
`server.token_factor`); `server.models = None` makes `GET /v1/models` answer 404.
Default: a condense request (a line "Follow-up question: ...") gets that question back unchanged;
an answer request gets "According to the documentation, <first sentence of source 1> [1]. ..."
built from the <source> blocks in the prompt.

Set `server.require_key = "sk-test"` to answer 401 to any other bearer token.

Use from a test module:  `from tests.fakes.llm_server import llm_server  # noqa: F401`
Standalone (e.g. for browser tests):  `python -m tests.fakes.llm_server --port 8765`
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from assistant.config import Settings

CHAT_PATHS = ("/v1/chat/completions", "/chat/completions")
MODEL = "fake-model"
_PIECES = re.compile(r"\s*\w+|\s*[^\w\s]|\s+")
_SOURCE = re.compile(r'<source id="(\d+)"[^>]*>\n(.*?)\n</source>', re.DOTALL)
_FOLLOW_UP = re.compile(r"^Follow-up question:\s*(.+)$", re.MULTILINE)


@dataclass
class Recorded:
    """One request as the server saw it."""

    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: Any  # parsed JSON, or None
    at: float = 0.0  # time.monotonic() on arrival (shows retry back-off)

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list((self.body or {}).get("messages") or [])

    @property
    def model(self) -> str | None:
        return (self.body or {}).get("model")

    @property
    def stream(self) -> bool:
        return bool((self.body or {}).get("stream"))

    @property
    def prompt(self) -> str:
        """All message contents joined (handy for assertions)."""
        return "\n\n".join(str(m.get("content", "")) for m in self.messages)


def split_tokens(text: str) -> list[str]:
    """Split like a tokenizer: words with their leading space, punctuation on its own."""
    return _PIECES.findall(text) or [text]


def count_tokens(text: str, factor: float = 1.0) -> int:
    """The fake model's token count: tokenizer-like pieces, times `factor`."""
    return math.ceil(len(_PIECES.findall(text)) * factor)


def _first_sentence(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith(("#", "```", "|"))]
    prose = " ".join(lines)
    m = re.match(r"(.{20,300}?[.!?])(\s|$)", prose)
    sentence = (m.group(1) if m else prose[:200]).rstrip(".!? ")
    return sentence


def default_answer(messages: list[dict[str, Any]]) -> str:
    """An answer composed from the prompt's sources (or a 'not covered' reply without any)."""
    last = str(messages[-1].get("content", "")) if messages else ""
    sources = _SOURCE.findall(last)
    if not sources:
        return "The documents do not cover this."
    parts = []
    for number, body in sources[:2]:
        sentence = _first_sentence(body.replace("&lt;", "<"))
        if sentence:
            parts.append(f"{sentence} [{number}].")
    if not parts:
        return "The documents do not cover this."
    parts[0] = parts[0][0].lower() + parts[0][1:]
    return "According to the documentation, " + " ".join(parts)


def _chunk(model: str, content: str | None = None, finish: str | None = None, role: bool = False) -> dict[str, Any]:
    delta: dict[str, Any] = {}
    if role:
        delta["role"] = "assistant"
    if content is not None:
        delta["content"] = content
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30  # idle keep-alive connections end by themselves
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # -- plumbing ----------------------------------------------------------------------------

    def _send(self, code: int, body: bytes, content_type: str = "application/json",
              headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, code: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._send(code, json.dumps(obj).encode(), headers=headers)

    def _read_body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return None

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):X}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _event(self, obj: Any) -> None:
        self._write_chunk(b"data: " + json.dumps(obj).encode() + b"\n\n")

    # -- routes ------------------------------------------------------------------------------

    def do_GET(self) -> None:
        fake: FakeLLMServer = self.server.fake
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            if fake.models is None:
                self._json(404, {"error": {"message": "no such route", "type": "not_found"}})
                return
            self._json(200, {"object": "list", "data": [{"id": m, "object": "model", "owned_by": "fake"}
                                                        for m in fake.models]})
        elif self.path == "/_fake/requests":
            self._json(200, [dataclasses.asdict(r) for r in fake.requests])
        else:
            self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

    def do_POST(self) -> None:
        fake: FakeLLMServer = self.server.fake
        body = self._read_body()
        if self.path == "/_fake/script":
            actions = (body or {}).get("actions") or []
            fake.script(*[tuple(a) for a in actions])
            self._json(200, {"queued": fake.pending()})
            return
        if self.path == "/_fake/reset":
            fake.reset()
            self._json(200, {"ok": True})
            return
        if self.path == "/extras/tokenize/count" and fake.tokenizer:
            fake.tokenize_requests.append(Recorded("POST", self.path, {}, body, time.monotonic()))
            self._json(200, {"count": count_tokens(str((body or {}).get("input", "")), fake.token_factor)})
            return
        if self.path not in CHAT_PATHS:
            self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
            return
        fake.requests.append(
            Recorded("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.monotonic())
        )
        if fake.require_key is not None and self.headers.get("Authorization") != f"Bearer {fake.require_key}":
            self._error(401, "Incorrect API key provided.", "invalid_api_key")
            return
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            self._error(400, "messages is required", "invalid_request_error")
            return
        if fake.n_ctx is not None:
            used = count_tokens("\n".join(str(m.get("content", "")) for m in body["messages"]), fake.token_factor)
            if used >= fake.n_ctx:
                self._overflow(bool(body.get("stream")), used, fake.n_ctx, int(body.get("max_tokens") or 16))
                return
        self._chat(body, fake.next_action())

    def _overflow(self, stream: bool, used: int, n_ctx: int, max_tokens: int) -> None:
        """What llama-cpp-python's server does with a prompt over its context."""
        if not stream:
            self._error(400, f"This model's maximum context length is {n_ctx} tokens. However, you requested "
                             f"{used + max_tokens} tokens ({used} in the messages, {max_tokens} in the completion). "
                             "Please reduce the length of the messages or completion.", "context_length_exceeded")
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self._write_chunk(b"")

    def _error(self, code: int, message: str | None = None, err_type: str | None = None,
               headers: dict[str, str] | None = None) -> None:
        hdrs = {"retry-after-ms": "10"} if code == 429 or code >= 500 else {}
        hdrs.update(headers or {})
        err = {"message": message or f"scripted error {code}", "type": err_type or "fake_error", "code": err_type}
        self._json(code, {"error": err}, hdrs)

    def _chat(self, body: dict[str, Any], action: tuple[Any, ...] | None) -> None:
        model = str(body.get("model") or MODEL)
        messages = body["messages"]
        stream = bool(body.get("stream"))
        kind = action[0] if action else "default"

        if kind == "status":
            code = int(action[1])
            message = action[2] if len(action) > 2 else None
            headers = action[3] if len(action) > 3 else None
            self._error(code, message, {401: "invalid_api_key", 404: "model_not_found", 429: "rate_limit_exceeded"}
                        .get(code, "server_error" if code >= 500 else "invalid_request_error"), headers)
            return
        if kind == "drop":
            self._abort()
            return
        if kind in ("empty_stream", "role_only") and stream:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if kind == "empty_stream":
                self._write_chunk(b"")
            else:
                self._event(_chunk(model, "", role=True))
                self._abort()
            return
        if kind == "stall":
            if self.server.fake.stopping.wait(float(action[1])):
                return
            kind, action = "default", None

        if stream and kind in ("endless", "badsse", "error_event"):
            self._misbehave(model, action)
            return

        delay: Any = 0.0
        finish = "stop"
        if kind in ("answer", "condense", "cut", "length"):
            payload = action[1]
            delay = action[2] if len(action) > 2 else 0.0
            finish = {"cut": None, "length": "length"}.get(kind, "stop")
        else:
            follow = _FOLLOW_UP.findall(str(messages[-1].get("content", ""))) if messages else []
            payload = follow[-1].strip() if follow and not stream else default_answer(messages)
        pieces = list(payload) if isinstance(payload, list) else split_tokens(str(payload))

        if not stream:
            text = "".join(pieces)
            wait = sum(delay) if isinstance(delay, list | tuple) else float(delay)
            if wait and self.server.fake.stopping.wait(wait):  # the time a model takes to write it
                return
            self._json(200, {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "finish_reason": finish or "stop"}],
                "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            })
            return

        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            self._event(_chunk(model, "", role=True))
            for i, piece in enumerate(pieces):
                wait = float(delay[i] if i < len(delay) else 0.0) if isinstance(delay, list | tuple) else float(delay)
                if wait and self.server.fake.stopping.wait(wait):
                    return
                self._event(_chunk(model, piece))
            if finish is None:  # "cut": the connection dies mid-answer
                self._abort()
                return
            self._event(_chunk(model, None, finish))
            self._write_chunk(b"data: [DONE]\n\n")
            self._write_chunk(b"")  # end of chunked body
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _start_stream(self, model: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self._event(_chunk(model, "", role=True))

    def _misbehave(self, model: str, action: tuple[Any, ...]) -> None:
        """The streams a well-behaved server never sends (see the module docstring)."""
        kind = action[0]
        stopping = self.server.fake.stopping
        try:
            self._start_stream(model)
            if kind == "endless":
                piece = str(action[1])
                interval = float(action[2]) if len(action) > 2 else 0.0
                while not stopping.is_set():
                    self._event(_chunk(model, piece))
                    self.server.fake.streamed += 1
                    if interval and stopping.wait(interval):
                        break
                return
            for piece in split_tokens(str(action[1])):
                self._event(_chunk(model, piece))
            if kind == "badsse":
                self._write_chunk(b'data: {"id": "chatcmpl-fake", "choices": [{"delta": {"content": "x\n\n')
            else:
                message = str(action[2]) if len(action) > 2 else "The server had an error"
                self._event({"error": {"message": message, "type": "server_error"}})
            self._write_chunk(b"")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _abort(self) -> None:
        """Close the socket at once, mid-response (no terminating chunk)."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeLLMServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients hanging up (timeouts) are part of the tests


class FakeLLMServer:
    """The server, its script and what it received. Use as a context manager or start()/stop()."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._httpd = _HTTPServer((host, port), _Handler)
        self._httpd.fake = self
        self._thread: threading.Thread | None = None
        self._actions: deque[tuple[Any, ...]] = deque()
        self._lock = threading.Lock()
        self.requests: list[Recorded] = []  # chat requests
        self.tokenize_requests: list[Recorded] = []
        self.require_key: str | None = None
        self.n_ctx: int | None = None  # a context window, enforced like llama.cpp's server
        self.tokenizer = False  # serve POST /extras/tokenize/count
        self.token_factor = 1.0  # the fake model's tokens per piece
        self.models: list[str] | None = [MODEL]  # GET /v1/models; None: 404
        self.stopping = threading.Event()
        self.streamed = 0  # pieces sent by "endless" streams (shows the client stopped reading)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def base_url(self) -> str:
        """What OPENAI_BASE_URL should be."""
        return self.url + "/v1"

    def script(self, *actions: tuple[Any, ...]) -> None:
        """Queue actions; each chat request consumes one (see the module docstring)."""
        with self._lock:
            self._actions.extend(actions)

    def next_action(self) -> tuple[Any, ...] | None:
        with self._lock:
            return self._actions.popleft() if self._actions else None

    def pending(self) -> int:
        with self._lock:
            return len(self._actions)

    def reset(self) -> None:
        with self._lock:
            self._actions.clear()
        self.requests.clear()

    @property
    def chat_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.path in CHAT_PATHS]

    def settings(self, **changes: Any) -> Settings:
        """Settings pointing the chat at this server (fast failure by default: 2 s, no retries)."""
        base = Settings(
            sample_docs=False,
            openai_api_key="sk-test",
            openai_base_url=self.base_url,
            llm_model=MODEL,
            llm_timeout=2.0,
            llm_max_retries=0,
        )
        return dataclasses.replace(base, **changes)

    def start(self) -> FakeLLMServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-llm", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture
def llm_server() -> Iterator[FakeLLMServer]:
    """A fresh fake LLM server for one test."""
    with FakeLLMServer() as server:
        yield server


def main(argv: list[str] | None = None) -> None:
    """Serve until interrupted (for browser tests and manual runs)."""
    parser = argparse.ArgumentParser(description="Fake OpenAI-compatible chat server for tests")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args(argv)
    server = FakeLLMServer(args.host, args.port)
    print(f"fake LLM server on {server.base_url}  (OPENAI_BASE_URL={server.base_url} LLM_MODEL={MODEL})", flush=True)
    server.start()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
