"""Optional password login: Chainlit's password form, checked against `ASSISTANT_USERS`.

Without `ASSISTANT_USERS` nothing is registered and the chat stays open, as a public docs
assistant should. With it, Chainlit requires a login for the page, the widget, the WebSocket and
every `/project/*` route, and signs its cookie with `CHAINLIT_AUTH_SECRET`: Chainlit refuses to
start without that secret, so it is checked here first, with a message that says what to set.

The widget on another site then works only for visitors who are already signed in to the
assistant in the same browser (which needs `CHAINLIT_COOKIE_SAMESITE=none` over HTTPS and the
site in `ALLOWED_ORIGINS`) or whose site passes `accessToken` (a JWT signed with the same
secret) to `mountChainlitWidget`; a public widget and a private chat need two deployments.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Mapping

import chainlit as cl

from assistant.auth import PasswordChecker
from assistant.config import Settings
from assistant.retrieval.errors import ConfigError

log = logging.getLogger(__name__)


def check_login_settings(settings: Settings, environ: Mapping[str, str] | None = None) -> None:
    """Refuse login settings that would not start or would not protect anything."""
    env = os.environ if environ is None else environ
    if not (env.get("CHAINLIT_AUTH_SECRET") or "").strip():
        raise ConfigError("ASSISTANT_USERS needs CHAINLIT_AUTH_SECRET to sign the login cookie: "
                          "make one with `chainlit create-secret` and set it")
    if "*" in settings.allowed_origins and (env.get("CHAINLIT_COOKIE_SAMESITE") or "lax").lower() == "none":
        raise ConfigError("With a login and CHAINLIT_COOKIE_SAMESITE=none, ALLOWED_ORIGINS=* would let any website "
                          "read your users' conversations: list the sites that embed the chat in ALLOWED_ORIGINS")


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


def enable_password_login(settings: Settings, environ: Mapping[str, str] | None = None) -> bool:
    """Register the password login when ASSISTANT_USERS is set; False (an open chat) otherwise."""
    if not settings.users:
        return False
    check_login_settings(settings, environ)
    cl.password_auth_callback(login_callback(PasswordChecker(settings.users)))
    return True
