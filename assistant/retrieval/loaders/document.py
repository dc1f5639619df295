"""What every loader shares: the `LoadedDocument` it returns, its title rules and one-line errors."""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from assistant.retrieval.errors import IngestError
from assistant.retrieval.sanitize import storable, storable_data, unstorable_reason
from assistant.retrieval.types import Block, LoadedDocument

MAX_TITLE_CHARS = 200  # titles are embedded with every chunk: keep them short


def new_doc(
    path: Path | str, raw: bytes, kind: str, title: str, blocks: list[Block], extra: dict[str, Any] | None = None
) -> LoadedDocument:
    """A document from a local file (`path` a Path) or a fetched page (`path` its URL, a str)."""
    if isinstance(path, str):
        source, name = path, path.rstrip("/").rsplit("/", 1)[-1] or path
        fallback_title = name
    else:
        source, name = path.resolve().as_posix(), path.name
        fallback_title = title_from_stem(path)
    if unstorable_reason(source):  # undecodable bytes in a file name arrive as lone surrogates
        shown = source.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        raise IngestError(f"{shown}: the file name is not valid UTF-8; rename the file and retry")
    metadata: dict[str, Any] = {"type": kind, "filename": name}
    metadata.update(extra or {})
    return LoadedDocument(
        source=source,
        title=storable(clean_title(title)) or fallback_title,
        blocks=[replace(b, text=storable(b.text)) for b in blocks],  # a UTF-16 file or a PDF may hold NULs
        content_hash=hashlib.sha256(raw).hexdigest(),
        metadata=storable_data(metadata),
    )


def clean_title(title: str | None) -> str:
    text = " ".join((title or "").split())
    if len(text) > MAX_TITLE_CHARS:
        text = text[: MAX_TITLE_CHARS - 1].rsplit(" ", 1)[0] + "…"
    return text


def title_from_stem(path: Path) -> str:
    """'getting-started_guide' -> 'Getting started guide' (mixed-case stems are kept as is)."""
    words = re.sub(r"[-_.]+", " ", path.stem).split()
    text = " ".join(words) or path.name
    return text[:1].upper() + text[1:] if text.islower() else text


def one_line(exc: BaseException) -> str:
    """A library's exception as a short single line, for an IngestError's reason."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:160]
