"""Fixture for tests that open mock Chainlit websocket sessions without a browser."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
from chainlit.chat_context import chat_contexts
from chainlit.session import WebsocketSession, ws_sessions_id, ws_sessions_sid


@pytest.fixture
def sessions() -> Iterator[list[WebsocketSession]]:
    """Sessions opened by a test; forgotten (and their element files removed) afterwards."""
    made: list[WebsocketSession] = []
    yield made
    for session in made:
        chat_contexts.pop(session.id, None)
        ws_sessions_id.pop(session.id, None)
        ws_sessions_sid.pop(session.socket_id, None)
        shutil.rmtree(session.files_dir, ignore_errors=True)
