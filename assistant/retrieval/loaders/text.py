"""Plain text (.txt): paragraphs split on blank lines, line breaks inside them kept."""

from __future__ import annotations

import re
from pathlib import Path

from assistant.retrieval.loaders.decode import decode, with_encoding
from assistant.retrieval.loaders.document import new_doc
from assistant.retrieval.types import Block, LoadedDocument

KIND = "txt"  # the document's `type` metadata (a search filter)
SUFFIXES = (".txt",)
MIME_TYPES = ("text/plain",)


def paragraphs(text: str) -> list[str]:
    """Split on blank lines; keep line breaks inside a paragraph (lists, verse, tables)."""
    out = []
    for part in re.split(r"\n[ \t\f\v]*\n", text):
        lines = [line.rstrip() for line in part.strip("\n").split("\n")]
        para = "\n".join(lines).strip()
        if para:
            out.append(para)
    return out


def load(path: Path, raw: bytes) -> LoadedDocument:
    """Title from the file name (text has no markup to take one from)."""
    text, encoding = decode(path, raw)
    blocks = [Block("text", p) for p in paragraphs(text)]
    return new_doc(path, raw, KIND, "", blocks, with_encoding(encoding))
