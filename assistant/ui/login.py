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
from collections.abc import Awaitable, Callable, Mapping

import chainlit as cl

from assistant.auth import PasswordChecker, check_login_settings
from assistant.config import Settings

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


def enable_password_login(settings: Settings, environ: Mapping[str, str] | None = None) -> bool:
    """Register the password login when ASSISTANT_USERS is set; False (an open chat) otherwise."""
    if not settings.users:
        return False
    check_login_settings(settings.users, settings.allowed_origins, environ)
    cl.password_auth_callback(login_callback(PasswordChecker(settings.users)))
    return True
