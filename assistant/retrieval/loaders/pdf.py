"""PDF (.pdf): text per page with its page number, paragraphs rebuilt from the text's layout.

`pypdf` is imported inside `load_pdf`, so nothing but ingest ever loads it.
"""

from __future__ import annotations

import io
import itertools
import re
from pathlib import Path
from typing import Any

from assistant.retrieval.errors import IngestError
from assistant.retrieval.loaders.document import clean_title, new_doc, one_line
from assistant.retrieval.types import Block, LoadedDocument

KIND = "pdf"  # the document's `type` metadata (a search filter)
SUFFIXES = (".pdf",)
MIME_TYPES = ("application/pdf",)

_PDF_ITEM = re.compile(r"^(?:[•◦▪‣●○■□–-]|\(?\d{1,3}[.)]|[a-z][.)])\s")
_HYPHEN_BREAK = re.compile(r"([^\W\d_])-[ \t]*\n[ \t]*([^\W\d_])")


def _dehyphen(match: re.Match[str]) -> str:
    """'exam-\nple' -> 'example', but 'Jean-\nPaul' keeps its hyphen."""
    if match.group(2).islower():
        return match.group(1) + match.group(2)
    return f"{match.group(1)}-{match.group(2)}"


def _pdf_paragraphs(text: str) -> list[str]:
    """Page text -> paragraphs: split on blank lines, undo end-of-line hyphens, join wrapped lines.

    A line starting with a bullet or an item number keeps its line break, so lists stay lists.
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    out = []
    for part in re.split(r"\n[ \t]*\n", text):
        lines = [" ".join(line.split()) for line in _HYPHEN_BREAK.sub(_dehyphen, part).split("\n")]
        para = ""
        for line in lines:
            if not line:
                continue
            para = f"{para}\n{line}" if para and _PDF_ITEM.match(line) else f"{para} {line}".lstrip()
        if para:
            out.append(para)
    return out


def _page_text(page: Any) -> str:
    """Page text with a blank line wherever the vertical gap between lines says "new paragraph".

    pypdf's plain extraction puts one newline between all lines, so paragraphs are lost; its
    visitor gives each text run's position, and a gap clearly wider than the page's usual line
    spacing (or a jump upwards, i.e. a new column) marks a paragraph break.
    """
    runs: list[tuple[str, float]] = []

    def visit(text: str, cm: list[float], tm: list[float], font: Any, size: float) -> None:
        if text:
            runs.append((text, tm[4] * cm[1] + tm[5] * cm[3] + cm[5]))

    plain = page.extract_text(visitor_text=visit) or ""
    if " ".join("".join(t for t, _ in runs).split()) != " ".join(plain.split()):
        return plain  # the visitor did not see the same text: trust the plain extraction
    lines: list[list[Any]] = [["", None]]  # [text, y of its first run]
    for text, y in runs:
        for k, part in enumerate(text.split("\n")):
            if k:
                lines.append(["", None])
            if part.strip() and lines[-1][1] is None:
                lines[-1][1] = y
            lines[-1][0] += part
    lines = [line for line in lines if line[0].strip()]
    gaps = sorted(a[1] - b[1] for a, b in itertools.pairwise(lines) if a[1] is not None and b[1] is not None)
    gaps = [g for g in gaps if g > 0]
    if not gaps:
        return plain
    usual = gaps[len(gaps) // 4]  # lower quartile: ordinary line spacing even on short pages
    out: list[str] = []
    for index, (text, y) in enumerate(lines):
        prev_y = lines[index - 1][1] if index else None
        if out and y is not None and prev_y is not None and (prev_y - y > 1.4 * usual or y > prev_y + usual):
            out.append("")
        out.append(text)
    return "\n".join(out)


def load(path: Path, raw: bytes) -> LoadedDocument:
    """Each page's paragraphs with its page number; title from the PDF's metadata, else its first line."""
    try:
        from pypdf import PdfReader
    except ImportError:
        raise IngestError(f"{path}: reading PDF needs pypdf; run `pip install pypdf`") from None
    try:
        reader = PdfReader(io.BytesIO(raw))
        if reader.is_encrypted:
            try:
                ok = bool(reader.decrypt(""))  # many PDFs are encrypted with an empty password
            except Exception:  # pypdf/cryptography raise many types
                ok = False
            if not ok:
                raise IngestError(f"{path}: encrypted PDF; save an unprotected copy and retry")
        pages = list(reader.pages)
    except IngestError:
        raise
    except Exception as exc:  # pypdf raises many unrelated types on bad input
        raise IngestError(f"{path}: corrupt or unreadable PDF ({one_line(exc)})") from None

    blocks: list[Block] = []
    failed: list[int] = []
    first_line = ""
    for number, page in enumerate(pages, start=1):
        try:
            text = _page_text(page)
        except Exception:  # one bad page should not lose the document
            failed.append(number)
            continue
        if number == 1:
            first_line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
        blocks.extend(Block("text", p, page=number) for p in _pdf_paragraphs(text))
    if not blocks:
        raise IngestError(f"{path}: scanned PDF? no text to index (no text layer; run OCR first)")

    meta_title = ""
    try:
        info = reader.metadata
        meta_title = str(info.title) if info is not None and info.title else ""
    except Exception:  # a broken Info dictionary only costs the title
        meta_title = ""
    extra: dict[str, Any] = {"pages": len(pages)}
    if failed:
        extra["unreadable_pages"] = failed
    title = clean_title(meta_title) or clean_title(first_line)
    return new_doc(path, raw, KIND, title, blocks, extra)
