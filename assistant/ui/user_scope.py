"""Who a data layer call acts for: the user Chainlit authenticated on the request or the session.

Kept apart from `assistant.ui.datalayer` (which needs psycopg) so the app can install the scoping at
import time without loading the database driver before its port opens: at 0.1 CPU every import
before the port is ten times its CPU time in wall-clock start-up.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from chainlit.context import context_var

from assistant.upstream_compat import on_signed_in_request

_acting_user: ContextVar[str | None] = ContextVar("assistant_acting_user", default=None)


def acting_user() -> str | None:
    """The identifier of the user this call acts for, or None when nobody is signed in."""
    who = _acting_user.get()
    if who:
        return who
    ctx = context_var.get(None)  # a chat session (websocket) carries its authenticated user
    user = getattr(getattr(ctx, "session", None), "user", None)
    return getattr(user, "identifier", None) or None


@contextmanager
def acting_as(identifier: str) -> Iterator[None]:
    """Run data layer calls on behalf of `identifier` (tests, maintenance scripts)."""
    token = _acting_user.set(identifier)
    try:
        yield
    finally:
        _acting_user.reset(token)


def install_user_scope(app: Any) -> None:
    """Record the user Chainlit authenticated on each HTTP request, for the data layer's scoping.

    Chainlit's routes do not pass the user to the data layer (and `/feedback` checks nothing), so
    the identifier goes into a context variable for the request (`on_signed_in_request`: how and why).
    """
    on_signed_in_request(app, _acting_user.set)
