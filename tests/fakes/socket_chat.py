"""A chat client speaking Chainlit's own Socket.IO protocol, for load tests and benchmarks.

It does what the browser's chat does, without a browser (chainlit 2.12, chainlit/socket.py):
connect to `<server>/ws/socket.io` over WebSocket with the auth payload the web app sends
(`sessionId`, `clientType`, `threadId`, `userEnv`, `chatProfile`), emit `connection_successful`
(which runs `on_chat_start`), then per question emit `client_message` with a `user_message` step
and follow the server's events: `task_start`, `new_message` / `update_message` (steps and
messages), `stream_start` + `stream_token` (the streamed answer), and `task_end` (turn over).

Each `Reply` says when the first answer text arrived (a `stream_token`, or a complete assistant
message if nothing was streamed) and when the turn ended, measured with `time.perf_counter()`
from the moment the message was handed to the socket: the server's latency as a client on the
same machine sees it, without any rendering.

    async with ChatSession("http://127.0.0.1:8000") as chat:
        reply = await chat.ask("How do I deploy on Render?")
        print(reply.ttft_ms, reply.total_ms, reply.text)

`run_sessions(url, [[q1, q2], [q3, q4]])` runs several such sessions at once (each asks its
questions one after another) and returns every reply, failures included.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import socketio

SOCKET_PATH = "/ws/socket.io"  # chainlit.server.SOCKET_IO_PATH without --root-path


class ChatProtocolError(RuntimeError):
    """The server refused the session or broke the protocol (disconnect mid-turn, timeout)."""


@dataclass
class Reply:
    """What one question got back, with its timings (seconds on `time.perf_counter()`)."""

    question: str
    sent_at: float
    first_token_at: float | None = None
    done_at: float | None = None
    text: str = ""  # the final content of the assistant's answer message
    streamed: str = ""  # the tokens as they arrived
    errors: list[str] = field(default_factory=list)  # error messages shown in the chat, protocol failures
    events: list[str] = field(default_factory=list)  # event names in arrival order (for diagnostics)
    answer_id: str | None = None

    @property
    def ok(self) -> bool:
        """Answered: the turn ended, an answer with text arrived, and no error was shown."""
        return self.done_at is not None and bool(self.text.strip()) and not self.errors

    @property
    def ttft_ms(self) -> float | None:
        """Message sent -> first answer text (streamed token or whole message)."""
        return None if self.first_token_at is None else (self.first_token_at - self.sent_at) * 1000

    @property
    def total_ms(self) -> float | None:
        """Message sent -> `task_end` (answer complete, sources attached)."""
        return None if self.done_at is None else (self.done_at - self.sent_at) * 1000


class ChatSession:
    """One chat session (one socket) against a running Chainlit server."""

    def __init__(self, url: str, *, client_type: str = "webapp", headers: dict[str, str] | None = None,
                 user_env: dict[str, str] | None = None, ready_event: str | None = "chat_settings") -> None:
        self.url = url.rstrip("/")
        self.session_id = str(uuid.uuid4())
        self.client_type = client_type
        self.headers = dict(headers or {})
        self.user_env = dict(user_env or {})
        # on_chat_start runs in the background after `connection_successful`; the assistant's ends by
        # sending the chat settings, so that event says the session is fully set up.
        self.ready_event = ready_event
        self.sio = socketio.AsyncClient(reconnection=False)
        self.sio.on("*", self._on_event)
        self.sio.on("disconnect", self._on_disconnect)
        self.seen: list[str] = []  # every event name received, in order
        self._ready = asyncio.Event()
        self._turn: Reply | None = None
        self._turn_started = False
        self._turn_done = asyncio.Event()
        self._disconnected = False

    async def __aenter__(self) -> ChatSession:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self, timeout: float = 30.0) -> None:
        """Open the socket as the web app does and wait until on_chat_start has finished."""
        auth = {"clientType": self.client_type, "sessionId": self.session_id, "threadId": "",
                "userEnv": json.dumps(self.user_env), "chatProfile": ""}
        try:
            await self.sio.connect(self.url, headers=self.headers, auth=auth, transports=["websocket"],
                                   socketio_path=SOCKET_PATH, wait_timeout=timeout)
        except socketio.exceptions.ConnectionError as err:
            raise ChatProtocolError(f"could not open a chat session on {self.url}: {err}") from err
        await self.sio.emit("connection_successful")
        if self.ready_event is not None:
            try:
                await asyncio.wait_for(self._ready.wait(), timeout)
            except TimeoutError:
                raise ChatProtocolError(f"no {self.ready_event!r} within {timeout} s of connecting;"
                                        f" events seen: {self.seen[-20:]}") from None

    async def close(self) -> None:
        """Leave like the web app's "new chat" does: ask the server to clear the session, disconnect."""
        if self.sio.connected:
            try:
                await self.sio.emit("clear_session")
            finally:
                await self.sio.disconnect()

    async def ask(self, question: str, timeout: float = 60.0) -> Reply:
        """Send one user message; return when the server ends the turn (`task_end`) or on timeout.

        Never raises for the server's behaviour: timeouts and disconnects are in `Reply.errors`.
        """
        if self._turn is not None:
            raise RuntimeError("one question at a time per session")
        step = {
            "threadId": "",
            "id": str(uuid.uuid4()),  # Chainlit asserts a version 4 UUID
            "name": "User",
            "type": "user_message",
            "output": question,
            "createdAt": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
            "metadata": {"location": self.url + "/"},
        }
        reply = Reply(question, time.perf_counter())
        self._turn, self._turn_started = reply, False
        self._turn_done.clear()
        try:
            if self._disconnected:
                reply.errors.append("the socket is disconnected")
                return reply
            reply.sent_at = time.perf_counter()
            await self.sio.emit("client_message", {"message": step, "fileReferences": []})
            try:
                await asyncio.wait_for(self._turn_done.wait(), timeout)
            except TimeoutError:
                reply.errors.append(f"no task_end within {timeout} s; events: {reply.events[-12:]}")
        finally:
            self._turn = None
        return reply

    # -- server events ----------------------------------------------------------------------------

    async def _on_disconnect(self, *args: Any) -> None:
        self._disconnected = True
        if self._turn is not None and self._turn.done_at is None:
            self._turn.errors.append("the server closed the socket during the turn")
            self._turn_done.set()

    async def _on_event(self, event: str, *args: Any) -> None:
        now = time.perf_counter()
        self.seen.append(event)
        data = args[0] if args else None
        if event == self.ready_event:
            self._ready.set()
        turn = self._turn
        if turn is None:
            return
        turn.events.append(event)
        if event == "task_start":
            self._turn_started = True
        elif event == "task_end":
            if self._turn_started:  # an earlier task_end (e.g. from connecting) is not this turn's
                turn.done_at = now
                self._turn_done.set()
        elif event == "stream_start" and isinstance(data, dict) and data.get("type") == "assistant_message":
            turn.answer_id = data.get("id")
        elif event == "stream_token" and isinstance(data, dict):
            if turn.answer_id is None or data.get("id") == turn.answer_id:
                turn.streamed += str(data.get("token", ""))
                if turn.first_token_at is None:
                    turn.first_token_at = now
        elif event in ("new_message", "update_message") and isinstance(data, dict):
            self._on_step(turn, data, now)
        elif event in ("ask", "call_fn"):  # expects an acknowledgement this client cannot give
            turn.errors.append(f"unexpected {event!r} request from the server")

    @staticmethod
    def _on_step(turn: Reply, step: dict[str, Any], now: float) -> None:
        if step.get("type") != "assistant_message":
            return
        output = str(step.get("output") or "")
        if step.get("isError"):
            turn.errors.append(output or "error message without text")
            return
        if turn.answer_id is None or step.get("id") == turn.answer_id:
            turn.answer_id = step.get("id")
            turn.text = output
            if turn.first_token_at is None and output.strip():
                turn.first_token_at = now


async def run_session(url: str, questions: Sequence[str], *, start: asyncio.Barrier | None = None,
                      timeout: float = 60.0, client_type: str = "webapp") -> list[Reply]:
    """One session asking `questions` one after another; a failed connection fails every question."""
    chat = ChatSession(url, client_type=client_type)
    try:
        await chat.connect(timeout)
    except ChatProtocolError as err:
        if start is not None:
            await start.wait()
        return [Reply(q, time.perf_counter(), errors=[str(err)]) for q in questions]
    try:
        if start is not None:
            await start.wait()  # every session connected: all start asking together
        return [await chat.ask(q, timeout) for q in questions]
    finally:
        await chat.close()


async def run_sessions(url: str, per_session: Sequence[Sequence[str]], *, timeout: float = 60.0,
                       client_type: str = "webapp") -> list[list[Reply]]:
    """Sessions at once, one per list of questions; they start asking when all are connected."""
    barrier = asyncio.Barrier(len(per_session))
    return list(await asyncio.gather(*[
        run_session(url, qs, start=barrier, timeout=timeout, client_type=client_type) for qs in per_session]))
