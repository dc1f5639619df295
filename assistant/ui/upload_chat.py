"""Files dropped or attached in the chat: checked, ingested with a live progress line, answerable at once.

Chainlit saves an attached file in the session's folder and hands the message to `on_message`
with one `File` element per file. Each is checked (who is asking, type, size, name), then ingested
in a worker thread by `assistant.ui.uploads.ingest_upload` while a status message under the user's
message is updated about twice a second: "Indexing guide.pdf · 12 of 40 passages · 6 s". Every
problem is one line in the chat; the other files of the message still go on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import chainlit as cl
from chainlit.context import context

from assistant.literal_markdown import escape_inline
from assistant.retrieval.errors import AssistantError, DatabaseError
from assistant.ui.uploads import (
    UploadOutcome,
    UploadProgress,
    UploadRefused,
    busy,
    check_size,
    ingest_upload,
    may_manage,
    refusal,
    safe_upload_name,
)

if TYPE_CHECKING:
    from assistant.ui.runtime import Runtime

log = logging.getLogger(__name__)

REFRESH_SECONDS = 0.5
DB_DOWN = ("{name} was not added: the document database is not reachable right now."
           " Nothing was saved; add the file again in a moment.")


def current_user() -> str | None:
    """The signed-in name of this chat's person (None in an open chat)."""
    try:
        user = context.session.user
    except Exception:  # no session (background task)
        return None
    return getattr(user, "identifier", None) if user is not None else None


def attached_files(message: cl.Message) -> list[Any]:
    """The message's uploaded files (elements Chainlit saved on disk)."""
    return [e for e in (message.elements or []) if getattr(e, "path", None)]


async def _error(text: str) -> None:
    await cl.ErrorMessage(content=text).send()


def _status(name: str, progress: UploadProgress) -> str:
    elapsed = f"{time.monotonic() - progress.started:.0f} s"
    label = f"**{escape_inline(name, 80)}**"
    if progress.phase == "waiting":
        return f"{label}: waiting for another upload to finish…"
    if progress.phase == "reading" or not progress.total:
        return f"Reading {label}… · {elapsed}"
    if progress.phase == "saving":
        return f"Saving {label} · {progress.total} passages · {elapsed}"
    return f"Indexing {label} · {progress.done} of {progress.total} passages embedded · {elapsed}"


def _done_line(outcome: UploadOutcome) -> str:
    name = f"**{escape_inline(outcome.name, 80)}**"
    passages = f"{outcome.chunks} passage{'s' if outcome.chunks != 1 else ''}"
    if outcome.status == "unchanged":
        return f"{name} is already indexed, unchanged ({passages})."
    verb = "Added" if outcome.status == "added" else "Replaced"
    return f"{verb} {name}: {passages} indexed in {outcome.seconds:.1f} s. You can ask about it now."


async def add_files(runtime: Runtime, message: cl.Message) -> list[int]:
    """Ingest the message's files; returns the ids of the documents now indexed from them."""
    files = attached_files(message)
    if not files:
        return []
    settings = runtime.settings
    if not may_manage(settings, current_user()):
        await _error(refusal(settings))
        return []
    limit = settings.upload_max_files
    if len(files) > limit:
        await _error(f"{len(files)} files attached; at most {limit} are added per message, so the first {limit} are.")
        files = files[:limit]
    ids: list[int] = []
    for element in files:
        outcome = await add_one(runtime, element)
        if outcome is not None and outcome.document_id is not None:
            ids.append(outcome.document_id)
    if ids:
        runtime.forget_starters()
    return ids


async def add_one(runtime: Runtime, element: Any) -> UploadOutcome | None:
    """One file: checks first (one line each), then the ingest with its progress message."""
    settings = runtime.settings
    name = str(getattr(element, "name", "") or Path(element.path).name)
    try:
        safe = safe_upload_name(name)
        check_size(safe, Path(element.path).stat().st_size, settings)
    except UploadRefused as err:
        await _error(str(err))
        return None
    except OSError:
        await _error(f"{escape_inline(name, 80)}: the upload did not arrive complete; add it again")
        return None
    try:
        retriever = await runtime.aretriever()
    except DatabaseError:
        await _error(DB_DOWN.format(name=safe))
        return None
    except AssistantError as err:
        await _error(f"{safe} was not added: {' '.join(str(err).split())[:200]}")
        return None
    progress = UploadProgress(phase="waiting" if busy() else "reading")
    status = cl.Message(content=_status(safe, progress))
    await status.send()
    work = asyncio.ensure_future(asyncio.to_thread(
        ingest_upload, Path(element.path), name, retriever.store, retriever.embedder, settings, progress))
    shown = status.content
    while not work.done():
        await asyncio.wait({work}, timeout=REFRESH_SECONDS)
        line = _status(safe, progress)
        if line != shown and not work.done():
            status.content = shown = line
            await status.update()
    try:
        outcome = work.result()
    except Exception:
        log.exception("upload of %s crashed", safe)
        await status.remove()
        await _error(f"{safe} was not added: something went wrong on the server; tell the site owner.")
        return None
    if outcome.status == "failed":
        await status.remove()
        await _error(DB_DOWN.format(name=safe) if outcome.database_down else (outcome.error or f"{safe} was not added"))
        return outcome
    log.info("upload %s by %s: %s, %d chunks", outcome.name, current_user() or "anonymous", outcome.status,
             outcome.chunks)
    status.content = _done_line(outcome)
    await status.update()
    return outcome
