"""Files added in the chat: who may add them, safe names, and ingesting one file all-or-nothing.

No Chainlit here (the chat side is `assistant.ui.upload_chat`), so tests and the HTTP routes use it
directly. An upload is kept as `ASSISTANT_DATA_DIR/uploads/<safe name>`, the path its document is
indexed under, so `python -m assistant ingest DATA_DIR/uploads --prune` re-syncs the folder and a
second upload with the same name replaces that document. The file is first written to a hidden
staging folder (ingest skips hidden folders), checked and chunked there, and only then moved into
place; if the database write fails, the previous file (or none) is put back, so the folder and the
index never disagree and nothing is half-written.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
import time
import unicodedata
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from assistant.retrieval.errors import AssistantError, DatabaseError, EmbeddingError, IngestError

if TYPE_CHECKING:
    import numpy as np

    from assistant.config import Settings
    from assistant.retrieval.embedders import Embedder
    from assistant.retrieval.store import Store

log = logging.getLogger(__name__)

# The suffixes the loaders read (assistant.retrieval.loaders.SUPPORTED_SUFFIXES), repeated here so
# this module imports without the loaders; a test checks both lists and .chainlit/config.toml agree.
UPLOAD_SUFFIXES: tuple[str, ...] = (".md", ".markdown", ".txt", ".html", ".htm", ".pdf")
MAX_NAME_CHARS = 120
STAGING = ".staging"  # hidden: `ingest` and `--prune` over the uploads folder never see it
PROGRESS_STEP = 4  # local embedding goes one passage at a time: report every few, not every batch

NOT_ALLOWED = "Only administrators can add or remove documents. Ask one of them (ASSISTANT_ADMINS)."
UPLOADS_OFF = "Adding documents in the chat is turned off here (ALLOW_UPLOADS=0)."

# One upload is ingested at a time per process: embedding is CPU-bound, and two uploads of the
# same name must not interleave their file moves.
_ONE_AT_A_TIME = threading.Lock()


class UploadRefused(AssistantError):
    """A file the user cannot add as it is (type, size, name, emptiness): one line that says why."""


def busy() -> bool:
    """Whether another upload is being ingested right now (the next one waits its turn)."""
    return _ONE_AT_A_TIME.locked()


# -- who may add and remove ------------------------------------------------------------------------


def uploads_possible(settings: Settings) -> bool:
    """Whether anyone at all may manage documents (drives Chainlit's upload button)."""
    return bool(settings.admins) if settings.users else settings.allow_uploads


def may_manage(settings: Settings, user: str | None) -> bool:
    """May this person (a signed-in name, or None in an open chat) upload and remove documents?"""
    if settings.users:
        return user is not None and user in settings.admins
    return settings.allow_uploads


def refusal(settings: Settings) -> str:
    """Why a person may not manage documents, as one line."""
    return NOT_ALLOWED if settings.users else UPLOADS_OFF


# -- names and limits ------------------------------------------------------------------------------


def safe_upload_name(name: str) -> str:
    """A file name that stays inside the uploads folder: the last path part only, letters, digits
    and a few punctuation marks kept, others replaced, no leading dots (so no `..`, no hidden
    files), at most MAX_NAME_CHARS. Raises UploadRefused when nothing usable is left or the type
    is not one the loaders read."""
    base = re.split(r"[\\/]", str(name or ""))[-1]
    base = unicodedata.normalize("NFC", base.encode("utf-8", "replace").decode("utf-8"))
    base = "".join(ch if ch.isalnum() or ch in "._-+,()[] " else "_" for ch in base)
    base = " ".join(base.split()).strip(" .")
    base = re.sub(r"\.{2,}", ".", base)
    shown = base or "(no name)"
    stem, suffix = os.path.splitext(base)
    if suffix.lower() not in UPLOAD_SUFFIXES:
        kind = f"{suffix.lower()} files" if suffix else "files without an extension"
        raise UploadRefused(f"{shown}: {kind} can't be indexed; add {', '.join(UPLOAD_SUFFIXES)} files")
    stem = stem.strip(" .")
    if not stem.strip("_"):
        raise UploadRefused(f"{shown}: the file name has no usable letters; rename it and add it again")
    return stem[: MAX_NAME_CHARS - len(suffix)].rstrip(" .") + suffix


def check_size(name: str, size: int, settings: Settings) -> None:
    """Refuse empty and over-size files before reading them."""
    if size <= 0:
        raise UploadRefused(f"{name} is empty: there is nothing to index")
    limit = settings.upload_max_mb * 1024 * 1024
    if size > limit:
        raise UploadRefused(f"{name} is {size / 1048576:.1f} MB; the limit is {settings.upload_max_mb} MB per file")


def upload_path(settings: Settings, safe_name: str) -> Path:
    """Where an upload lives; refuses (never returns) a path outside the uploads folder."""
    folder = settings.uploads_dir.expanduser().resolve()
    path = (folder / safe_name).resolve()
    if path.parent != folder:
        raise UploadRefused(f"{safe_name}: not a plain file name; rename it and add it again")
    return path


def is_upload(source: str, settings: Settings) -> bool:
    """Whether an indexed document came from the chat upload (its file is in the uploads folder)."""
    if "://" in source:
        return False
    folder = settings.uploads_dir.expanduser().resolve()
    return Path(source).parent == folder


# -- progress --------------------------------------------------------------------------------------


@dataclass
class UploadProgress:
    """Counters the chat polls while a file is ingested in a worker thread."""

    phase: str = "reading"  # (waiting ->) reading -> embedding -> saving -> done
    total: int = 0
    done: int = 0
    started: float = field(default_factory=time.monotonic)

    def advance(self, n: int) -> None:
        self.done = min(self.total, self.done + n) if self.total else self.done + n


class _CountingEmbedder:
    """Passes passages to the real embedder and counts them for the progress line."""

    def __init__(self, inner: Embedder, progress: UploadProgress) -> None:
        self.inner = inner
        self.progress = progress

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        import numpy as np

        self.progress.phase = "embedding"
        step = PROGRESS_STEP if getattr(self.inner, "provider", "") == "local" else max(len(texts), 1)
        parts = []
        for i in range(0, len(texts), step):
            part = list(texts[i:i + step])
            parts.append(self.inner.embed_passages(part))
            self.progress.advance(len(part))
        return np.vstack(parts) if parts else np.zeros((0, self.inner.dim), dtype=np.float32)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


# -- ingesting one file ----------------------------------------------------------------------------


@dataclass
class UploadOutcome:
    """What happened to one file."""

    name: str
    status: Literal["added", "replaced", "unchanged", "failed"]
    document_id: int | None = None
    chunks: int = 0
    seconds: float = 0.0
    error: str | None = None
    database_down: bool = False


def _one_line(text: str, *paths: Path) -> str:
    """An ingest message without our folders in it (users see the file name only)."""
    for path in paths:
        text = text.replace(str(path), path.name).replace(path.as_posix(), path.name)
    return " ".join(text.split())[:300]


def ingest_upload(source_file: Path, name: str, store: Store, embedder: Embedder, settings: Settings,
                  progress: UploadProgress | None = None) -> UploadOutcome:
    """Add (or replace) one uploaded file; blocking, run it in a worker thread. Never half-writes:
    either the file is in the uploads folder and its document committed, or neither changed.
    User mistakes come back as a failed outcome; only programming errors raise."""
    from assistant.retrieval.chunking import chunk_document
    from assistant.retrieval.ingest import ingest_paths
    from assistant.retrieval.loaders import load_file

    progress = progress or UploadProgress()
    started = time.monotonic()
    try:
        safe = safe_upload_name(name)
        check_size(safe, source_file.stat().st_size, settings)
        final = upload_path(settings, safe)
    except UploadRefused as err:
        return UploadOutcome(name, "failed", error=str(err))
    except OSError as err:
        return UploadOutcome(name, "failed", error=f"{name}: the upload could not be read ({err.strerror});"
                             " add it again")
    if busy():
        progress.phase = "waiting"
    with _ONE_AT_A_TIME:
        progress.phase, progress.started = "reading", time.monotonic()
        staging = final.parent / STAGING / uuid.uuid4().hex
        try:
            staging.mkdir(parents=True)
            staged = staging / safe
            shutil.copyfile(source_file, staged)
            try:  # parse and chunk before touching the uploads folder: bad files stop here
                doc = load_file(staged)
                chunks = chunk_document(doc, max_tokens=settings.chunk_tokens, overlap_tokens=settings.chunk_overlap)
            except IngestError as err:
                return UploadOutcome(safe, "failed", error=_one_line(str(err), staged))
            progress.total = len(chunks)
            return _swap_in(staged, final, store, _CountingEmbedder(embedder, progress), settings, progress,
                            ingest_paths, started)
        except OSError as err:
            log.warning("upload of %s failed: %s", safe, err)
            return UploadOutcome(safe, "failed", error=f"{safe}: could not be saved on the server ({err.strerror});"
                                 " tell the site owner")
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            progress.phase = "done"


def _swap_in(staged: Path, final: Path, store: Store, embedder: Any, settings: Settings,
             progress: UploadProgress, ingest_paths: Any, started: float) -> UploadOutcome:
    """Move the staged file into place, ingest it, and put the previous file back on failure."""
    safe = final.name
    previous = staged.parent / (staged.name + ".previous")
    had_previous = final.exists()
    if had_previous:
        os.replace(final, previous)
    os.replace(staged, final)
    error: str | None = None
    database_down = False
    report = None
    try:
        report = ingest_paths([final], store, embedder, settings, progress=False, log=lambda _msg: None)
        if report.failed:
            error = _one_line(report.failed[0][1], final)
            database_down = not _reachable(store)
    except DatabaseError as err:
        error, database_down = _one_line(str(err), final), True
    except EmbeddingError as err:
        error = _one_line(str(err), final)
    if error is not None:
        final.unlink(missing_ok=True)
        if had_previous:
            os.replace(previous, final)
        log.warning("upload of %s not indexed: %s", safe, error)
        return UploadOutcome(safe, "failed", error=error if error.startswith(safe) else f"{safe}: {error}",
                             database_down=database_down, seconds=time.monotonic() - started)
    previous.unlink(missing_ok=True)
    assert report is not None
    progress.phase = "saving"
    status: Literal["added", "replaced", "unchanged"] = (
        "added" if report.added else "replaced" if report.updated else "unchanged")
    rows = store.documents(sources=[final.as_posix()], limit=1)
    row = rows[0] if rows else {}
    return UploadOutcome(safe, status, document_id=row.get("id"), chunks=int(row.get("chunk_count") or 0),
                         seconds=time.monotonic() - started)


def _reachable(store: Store) -> bool:
    try:
        store.ping()
    except DatabaseError:
        return False
    return True


def remove_upload_file(source: str, settings: Settings) -> bool:
    """Delete an uploaded document's kept file (after its rows are gone), so re-ingest won't bring it back."""
    if not is_upload(source, settings):
        return False
    try:
        Path(source).unlink()
    except FileNotFoundError:
        return False
    except OSError as err:
        log.warning("could not delete %s: %s", source, err)
        return False
    return True
