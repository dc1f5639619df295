"""File loaders: Markdown, plain text, HTML and PDF turned into structural `Block`s.

Loaders keep the structure the chunker needs (headings with levels, code kept as fenced code,
paragraphs, PDF page numbers) and drop what would pollute retrieval (navigation, scripts, page
chrome). Anything a user can get wrong (unknown type, empty, binary, corrupt or scanned PDF)
raises `IngestError` with one line naming the file, so a batch ingest can report it and go on.

One module per format, each with its `KIND` (the document's `type` metadata), `SUFFIXES`,
`MIME_TYPES` and `load(path, raw)`; `FORMATS` below is the registry, so adding a format is one
new module and one entry there. `document` and `decode` hold what the formats share.

Only the standard library is used, except `pypdf` (PDF) and `resiliparse` (HTML main content, in
`html_content`), each imported inside its loader so that the retrieval package, and the chat server,
never load them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from assistant.markdown_syntax import fence_code
from assistant.retrieval.errors import IngestError
from assistant.retrieval.loaders import html, markdown, pdf, text
from assistant.retrieval.loaders.document import MAX_TITLE_CHARS
from assistant.retrieval.loaders.html import load_html
from assistant.retrieval.types import LoadedDocument

__all__ = ["FORMATS", "MAX_TITLE_CHARS", "SUPPORTED_SUFFIXES", "Format", "fence_code", "load_file", "load_html"]


@dataclass(frozen=True)
class Format:
    """One file format the loaders read."""

    kind: str  # the document's `type` metadata
    suffixes: tuple[str, ...]  # lowercase, with the dot
    mime_types: tuple[str, ...]
    load: Callable[[Path, bytes], LoadedDocument]

    @classmethod
    def of(cls, module: ModuleType) -> Format:
        return cls(module.KIND, module.SUFFIXES, module.MIME_TYPES, module.load)


FORMATS: tuple[Format, ...] = tuple(Format.of(m) for m in (markdown, text, html, pdf))
SUPPORTED_SUFFIXES: tuple[str, ...] = tuple(s for f in FORMATS for s in f.suffixes)
_BY_SUFFIX: dict[str, Format] = {s: f for f in FORMATS for s in f.suffixes}


def load_file(path: Path) -> LoadedDocument:
    """Load one file into a `LoadedDocument`, dispatching on its suffix (case-insensitive).

    Raises IngestError (one line, naming the file) for anything that cannot be indexed.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    fmt = _BY_SUFFIX.get(suffix)
    if fmt is None:
        kind = f"'{suffix}'" if suffix else "(no extension)"
        raise IngestError(f"{path}: unsupported file type {kind}; supported: {', '.join(SUPPORTED_SUFFIXES)}")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise IngestError(f"{path}: cannot read file ({exc.strerror or exc})") from None
    if not raw.strip():
        raise IngestError(f"{path}: empty file, nothing to index")
    doc = fmt.load(path, raw)
    if not any(b.text.strip() for b in doc.blocks if b.kind != "heading"):
        raise IngestError(f"{path}: no extractable text, nothing to index")
    return doc
