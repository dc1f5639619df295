"""Optional password login: Chainlit's password form, checked against `ASSISTANT_USERS`.

Without `ASSISTANT_USERS` nothing is registered and the chat stays open, as a public docs
assistant should. With it, Chainlit requires a login for the page, the widget, the WebSocket and
every `/project/*` route, and signs its cookie with `CHAINLIT_AUTH_SECRET`: Chainlit refuses to
start without that secret, so it is checked here first, with a message that says what to set.

The widget on another site then works only for visitors who are already signed in to the
assistant in the same browser (which needs `CHAINLIT_COOKIE_SAMESITE=none` over HTTPS and the
site in `ALLOWED_ORIGINS`) or whose site passes `accessToken` (a JWT signed with the same
secret) to `mountChainlitWidget`; a public widget and a private chat need two deployments.

Guessing is slowed by `LoginRateLimit` in front of Chainlit's `POST /login` (its callback sees
neither the client's address nor the response): LOGIN_MAX_FAILURES failures per user name, four
times that per client address, within LOGIN_WINDOW seconds; then HTTP 429 with a one-line reason
and Retry-After, before any password is hashed. The address is the one uvicorn reports: behind a
proxy, uvicorn's FORWARDED_ALLOW_IPS decides whether X-Forwarded-For is believed.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import chainlit as cl

from assistant.auth import LoginLimiter, PasswordChecker, check_login_settings, retry_message
from assistant.config import Settings
from assistant.upstream_compat import add_middleware

log = logging.getLogger(__name__)


def login_callback(checker: PasswordChecker) -> Callable[[str, str], Awaitable[cl.User | None]]:
    """The `@cl.password_auth_callback` for these users (hashing runs off the event loop)."""

    async def login(username: str, password: str) -> cl.User | None:
        name = await asyncio.to_thread(checker.check, username, password)
        if name is None:
            # Never the typed name: people paste passwords into the wrong field.
            log.warning("login refused (unknown user or wrong password)")
            return None
        return cl.User(identifier=name, metadata={"provider": "password"})

    return login


MAX_LOGIN_BODY = 64 * 1024  # a login form is a name and a password; more is not one


async def _form_username(body: bytes, headers: list[tuple[bytes, bytes]]) -> str:
    """The `username` field of a login form body (urlencoded or multipart, as the page sends it)."""
    from starlette.requests import Request

    async def replay() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request({"type": "http", "method": "POST", "headers": headers}, replay).form()
        value = form.get("username")
        return value if isinstance(value, str) else ""
    except Exception:  # malformed: Chainlit's own handler answers it (422); count it under no name
        return ""


class LoginRateLimit:
    """ASGI middleware: the LoginLimiter in front of `POST /login` (see the module docstring)."""

    def __init__(self, app: Any, limiter: LoginLimiter) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST" or not scope.get("path", "").endswith("/login"):
            await self.app(scope, receive, send)
            return
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > MAX_LOGIN_BODY:
                await _json(send, 413, {"detail": "The sign-in form is too large."})
                return
        name = await _form_username(body, scope.get("headers", []))
        address = (scope.get("client") or ("unknown", 0))[0]
        refused = self.limiter.begin(name, address)
        if refused is not None:
            kind, seconds = refused
            log.warning("login refused: too many failed attempts %s", "for one user name" if kind == "user"
                        else f"from {address}")
            await _json(send, 429, {"detail": retry_message(kind, seconds)}, {"retry-after": str(round(seconds))})
            return
        status: list[int] = []

        async def replay() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def watch(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        await self.app(scope, replay, watch)
        if status and status[0] < 400:
            self.limiter.succeeded(name, address)


async def _json(send: Any, status: int, obj: dict[str, Any], headers: dict[str, str] | None = None) -> None:
    raw = json.dumps(obj).encode()
    extra = [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode()),
                            *extra]})
    await send({"type": "http.response.body", "body": raw})


def enable_password_login(settings: Settings, *, app: Any = None) -> bool:
    """Register the password login when ASSISTANT_USERS is set (and its rate limit on `app`,
    Chainlit's server by default); False (an open chat) otherwise."""
    if not settings.users:
        return False
    check_login_settings(settings.users, settings.allowed_origins, settings.chainlit_auth_secret,
                         settings.chainlit_cookie_samesite)
    cl.password_auth_callback(login_callback(PasswordChecker(settings.users)))
    if app is None:
        from chainlit.server import app
    add_middleware(app, LoginRateLimit, limiter=LoginLimiter(settings.login_max_failures, settings.login_window))
    return True
