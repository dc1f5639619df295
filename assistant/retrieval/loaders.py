"""File loaders: Markdown, plain text, HTML and PDF turned into structural `Block`s.

Loaders keep the structure the chunker needs (headings with levels, code kept as fenced code,
paragraphs, PDF page numbers) and drop what would pollute retrieval (navigation, scripts, page
chrome). Anything a user can get wrong (unknown type, empty, binary, corrupt or scanned PDF)
raises `IngestError` with one line naming the file, so a batch ingest can report it and go on.

Only the standard library is used, except `pypdf` (PDF) and `resiliparse` (HTML main content, in
`html_content`), each imported inside its loader so that the retrieval package, and the chat server,
never load them.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import itertools
import re
import unicodedata
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from assistant.retrieval.errors import IngestError
from assistant.retrieval.sanitize import storable, storable_data, unstorable_reason
from assistant.retrieval.types import Block, LoadedDocument

SUPPORTED_SUFFIXES: tuple[str, ...] = (".md", ".markdown", ".txt", ".html", ".htm", ".pdf")

MAX_TITLE_CHARS = 200  # titles are embedded with every chunk: keep them short
_BINARY_CONTROL_RATIO = 0.10  # real text has ~0% control characters; random bytes ~13-25%

# --------------------------------------------------------------------------------------------
# Entry point


def load_file(path: Path) -> LoadedDocument:
    """Load one file into a `LoadedDocument`, dispatching on its suffix (case-insensitive).

    Raises IngestError (one line, naming the file) for anything that cannot be indexed.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    loader = _LOADERS.get(suffix)
    if loader is None:
        kind = f"'{suffix}'" if suffix else "(no extension)"
        raise IngestError(f"{path}: unsupported file type {kind}; supported: {', '.join(SUPPORTED_SUFFIXES)}")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise IngestError(f"{path}: cannot read file ({exc.strerror or exc})") from None
    if not raw.strip():
        raise IngestError(f"{path}: empty file, nothing to index")
    doc = loader(path, raw)
    if not any(b.text.strip() for b in doc.blocks if b.kind != "heading"):
        raise IngestError(f"{path}: no extractable text, nothing to index")
    return doc


def _new_doc(
    path: Path | str, raw: bytes, kind: str, title: str, blocks: list[Block], extra: dict[str, Any] | None = None
) -> LoadedDocument:
    """A document from a local file (`path` a Path) or a fetched page (`path` its URL, a str)."""
    if isinstance(path, str):
        source, name = path, path.rstrip("/").rsplit("/", 1)[-1] or path
        fallback_title = name
    else:
        source, name = path.resolve().as_posix(), path.name
        fallback_title = _title_from_stem(path)
    if unstorable_reason(source):  # undecodable bytes in a file name arrive as lone surrogates
        shown = source.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        raise IngestError(f"{shown}: the file name is not valid UTF-8; rename the file and retry")
    metadata: dict[str, Any] = {"type": kind, "filename": name}
    metadata.update(extra or {})
    return LoadedDocument(
        source=source,
        title=storable(_clean_title(title)) or fallback_title,
        blocks=[replace(b, text=storable(b.text)) for b in blocks],  # a UTF-16 file or a PDF may hold NULs
        content_hash=hashlib.sha256(raw).hexdigest(),
        metadata=storable_data(metadata),
    )



def _clean_title(title: str | None) -> str:
    text = " ".join((title or "").split())
    if len(text) > MAX_TITLE_CHARS:
        text = text[: MAX_TITLE_CHARS - 1].rsplit(" ", 1)[0] + "…"
    return text


def _title_from_stem(path: Path) -> str:
    """'getting-started_guide' -> 'Getting started guide' (mixed-case stems are kept as is)."""
    words = re.sub(r"[-_.]+", " ", path.stem).split()
    text = " ".join(words) or path.name
    return text[:1].upper() + text[1:] if text.islower() else text


# --------------------------------------------------------------------------------------------
# Text decoding


def _decode(path: Path | str, raw: bytes, fallback_codec: str | None = None) -> tuple[str, str | None]:
    """Bytes to text: BOMs first, then UTF-8, then `fallback_codec`, then cp1252/latin-1.

    Returns (text, encoding) where encoding is None for plain UTF-8. Never fails on the
    encoding; raises IngestError when the bytes look binary.
    """
    encoding: str | None = None
    if raw.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        text, encoding = _decode_bom(path, raw, "utf-32")
    elif raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        text, encoding = _decode_bom(path, raw, "utf-16")
    else:
        if b"\x00" in raw:
            raise IngestError(f"{path}: binary file (contains NUL bytes), not text")
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            text = ""
            for codec in (fallback_codec, "cp1252", "latin-1"):
                if not codec:
                    continue
                try:
                    text = raw.decode(codec)
                except (UnicodeDecodeError, LookupError):
                    continue
                encoding = codec if codec in ("cp1252", "latin-1") else codecs.lookup(codec).name
                break
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if _looks_binary(text):
        raise IngestError(f"{path}: binary file (mostly non-printable characters), not text")
    return text, encoding


def _decode_bom(path: Path | str, raw: bytes, codec: str) -> tuple[str, str]:
    try:
        return raw.decode(codec), codec
    except UnicodeDecodeError:
        raise IngestError(f"{path}: invalid {codec.upper()} text (has a BOM but bad bytes)") from None


def _looks_binary(text: str) -> bool:
    sample = text[:65536]
    if not sample:
        return False
    bad = sum(
        1
        for ch in sample
        if (ch not in "\t\n\f\v" and unicodedata.category(ch) in ("Cc", "Cs", "Co", "Cn")) or ch == "\ufffd"
    )
    return bad / len(sample) > _BINARY_CONTROL_RATIO


def _with_encoding(encoding: str | None) -> dict[str, Any]:
    return {"encoding": encoding} if encoding else {}


# --------------------------------------------------------------------------------------------
# Plain text


def _paragraphs(text: str) -> list[str]:
    """Split on blank lines; keep line breaks inside a paragraph (lists, verse, tables)."""
    out = []
    for part in re.split(r"\n[ \t\f\v]*\n", text):
        lines = [line.rstrip() for line in part.strip("\n").split("\n")]
        para = "\n".join(lines).strip()
        if para:
            out.append(para)
    return out


def _load_txt(path: Path, raw: bytes) -> LoadedDocument:
    text, encoding = _decode(path, raw)
    blocks = [Block("text", p) for p in _paragraphs(text)]
    return _new_doc(path, raw, "txt", "", blocks, _with_encoding(encoding))


# --------------------------------------------------------------------------------------------
# Markdown

_FENCE = re.compile(r"^( {0,3})(`{3,}|~{3,})(.*)$")
_ATX = re.compile(r"^ {0,3}(#{1,6})(?=[ \t]|$)(.*)$")
_ATX_CLOSE = re.compile(r"(?:^|[ \t]+)#+[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_HR = re.compile(r"^ {0,3}(?:(?:\*[ \t]*){3,}|(?:-[ \t]*){3,}|(?:_[ \t]*){3,})$")
_LIST_ITEM = re.compile(r"^ {0,3}(?:[-+*]|\d{1,9}[.)])(?:[ \t]+|$)")
_QUOTE = re.compile(r"^ {0,3}>")
_TABLE_ROW = re.compile(r"^ {0,3}\|")
_INDENTED = re.compile(r"^(?: {4}|\t)")
_FM_KEY = re.compile(r"^([A-Za-z_][\w-]*)[ \t]*:[ \t]*(.*)$")
_FM_ITEM = re.compile(r"^[ \t]*-[ \t]+(.*)$")
_RESERVED_META = frozenset({"type", "filename", "encoding"})


def fence_code(code: str, info: str = "") -> str:
    """Wrap code in a backtick fence longer than any backtick run inside it."""
    longest = max((len(m) for m in re.findall(r"`+", code)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{code}\n{fence}"


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def _front_matter(text: str) -> tuple[dict[str, Any], str]:
    """Parse simple YAML-ish `key: value` front matter; return (fields, remaining text).

    Only flat keys, inline `[a, b]` lists and `- item` lists are understood. If the block
    between the `---` lines does not look like that, it is not front matter (a thematic break).
    """
    lines = text.split("\n")
    if not lines or lines[0].strip() != "---":
        return {}, text
    for end in range(1, min(len(lines), 200)):
        if lines[end].strip() in ("---", "..."):
            break
    else:
        return {}, text
    fields: dict[str, Any] = {}
    key: str | None = None
    for line in lines[1:end]:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        item = _FM_ITEM.match(line)
        if item and key is not None and (fields[key] == "" or isinstance(fields[key], list)):
            if fields[key] == "":
                fields[key] = []
            fields[key].append(_unquote(item.group(1)))
            continue
        match = _FM_KEY.match(line)
        if match is None:
            if key is not None and line[:1] in " \t" and isinstance(fields[key], str):
                fields[key] = f"{fields[key]} {line.strip()}".strip()  # folded continuation
                continue
            return {}, text  # not front matter after all
        key = match.group(1).lower()
        value = match.group(2).strip()
        if value.startswith("[") and value.endswith("]"):
            fields[key] = [_unquote(v) for v in value[1:-1].split(",") if v.strip()]
        else:
            fields[key] = _unquote(value)
    if isinstance(fields.get("tags"), str):
        fields["tags"] = [t.strip() for t in fields["tags"].split(",") if t.strip()]
    return fields, "\n".join(lines[end + 1 :])


def _markdown_blocks(text: str) -> list[Block]:
    """Line-based Markdown block parser: just enough CommonMark for chunk boundaries."""
    blocks: list[Block] = []
    group: list[str] = []
    group_kind = ""  # "para" | "list" | "quote" | "table"
    after_blank = True  # a blank line (or the start) precedes the current line
    list_blank = False  # a list was interrupted by a blank line and may continue

    def flush() -> None:
        nonlocal group, group_kind, list_blank
        body = "\n".join(line.rstrip() for line in group).strip("\n")
        if body.strip():
            blocks.append(Block("text", body))
        group, group_kind, list_blank = [], "", False

    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        fence = _FENCE.match(line)
        if fence and not (fence.group(2)[0] == "`" and "`" in fence.group(3)):
            flush()
            indent, marker = len(fence.group(1)), fence.group(2)
            close = re.compile(rf"^ {{0,3}}{re.escape(marker[0])}{{{len(marker)},}}[ \t]*$")
            body: list[str] = []
            i += 1
            while i < len(lines) and not close.match(lines[i]):
                body.append(re.sub(rf"^ {{0,{indent}}}", "", lines[i]) if indent else lines[i])
                i += 1
            closed = i < len(lines)
            code = "\n".join(body)
            if code.strip():  # fences kept (closed even if the file forgot) so it renders as code
                blocks.append(Block("code", f"{marker}{fence.group(3).rstrip()}\n{code}\n{marker}"))
            i += 1 if closed else 0
            after_blank = False
            continue
        if not stripped:
            if group_kind == "list":
                list_blank = True
            else:
                flush()
            after_blank = True
            i += 1
            continue
        if list_blank:
            if _LIST_ITEM.match(line) or line[:1] in " \t":
                group.append("")  # keep the loose list together, blank line included
                list_blank = False
            else:
                flush()
        if not group and after_blank and _INDENTED.match(line):
            code_lines: list[str] = []
            while i < len(lines) and (not lines[i].strip() or _INDENTED.match(lines[i])):
                code_lines.append(re.sub(r"^(?: {4}|\t)", "", lines[i]))
                i += 1
            code = "\n".join(code_lines).strip("\n")
            if code.strip():
                blocks.append(Block("code", fence_code(code)))
            after_blank = False
            continue
        atx = _ATX.match(line)
        if atx:
            flush()
            title = _ATX_CLOSE.sub("", atx.group(2).strip()).strip()
            if title:
                blocks.append(Block("heading", title, level=len(atx.group(1))))
            after_blank = False
            i += 1
            continue
        setext = _SETEXT.match(line)
        if setext and group and group_kind == "para":
            title = " ".join(" ".join(group).split())
            level = 1 if setext.group(1)[0] == "=" else 2
            group, group_kind = [], ""
            blocks.append(Block("heading", title, level=level))
            after_blank = False
            i += 1
            continue
        if _HR.match(line):
            flush()
            after_blank = True
            i += 1
            continue
        if _LIST_ITEM.match(line):
            kind = "list"
        elif _QUOTE.match(line):
            kind = "quote"
        elif _TABLE_ROW.match(line):
            kind = "table"
        else:
            kind = "para"
        if not group:
            group_kind = kind
        elif kind == "list" and group_kind == "para":
            group_kind = "list"  # "Intro:\n- a\n- b" stays one block, and cannot be a setext title
        group.append(line)
        after_blank = False
        i += 1
    flush()
    return blocks


def _load_markdown(path: Path, raw: bytes) -> LoadedDocument:
    text, encoding = _decode(path, raw)
    fields, body = _front_matter(text)
    blocks = _markdown_blocks(body)
    h1 = next((b.text for b in blocks if b.kind == "heading" and b.level == 1), "")
    fm_title = fields.get("title") if isinstance(fields.get("title"), str) else ""
    extra = {k: v for k, v in fields.items() if k not in _RESERVED_META}
    extra.update(_with_encoding(encoding))
    doc = _new_doc(path, raw, "md", h1 or fm_title or "", blocks, extra)
    url = fields.get("url")
    if isinstance(url, str) and url.strip():
        doc.url = url.strip()
    return doc


# --------------------------------------------------------------------------------------------
# HTML

def _html_charset(raw: bytes) -> str | None:
    head = raw[:4096].decode("ascii", "ignore")
    m = re.search(r"<meta[^>]+charset\s*=\s*[\"']?\s*([\w.:-]+)", head, re.IGNORECASE)
    if m is None:
        return None
    try:
        return codecs.lookup(m.group(1)).name
    except LookupError:
        return None


def _absolute_url(url: str | None, base: Path | str) -> str | None:
    """An http(s) URL as is; a relative one resolved against a fetched page's URL; else None."""
    url = (url or "").strip()
    if url and isinstance(base, str) and re.match(r"^https?://", base, re.IGNORECASE):
        url = urljoin(base, url)
    if url and re.match(r"^https?://", url, re.IGNORECASE):
        return url
    return None


def _page_title(title: str, first_h1: str) -> str:
    """The page's <title>, or its H1 when one contains the other.

    "abc — Abstract Base Classes — Python 3.11 documentation" with H1 "abc — Abstract Base
    Classes", or "git-bisect(1)" with H1 "git-bisect(1) Manual Page": the H1 is the title a reader
    sees, and taking it lets heading paths drop the H1 instead of repeating the title.
    """
    title, h1 = _clean_title(title), _clean_title(first_h1)
    if title and h1 and (h1.casefold() in title.casefold() or title.casefold() in h1.casefold()):
        return h1
    return title or h1


def _load_html(path: Path, raw: bytes) -> LoadedDocument:
    return load_html(raw, path)


def load_html(raw: bytes, source: Path | str, *, charset: str | None = None) -> LoadedDocument:
    """An HTML page from its bytes: a local file (`source` its Path) or a fetched page (its URL).

    `charset` is the one a server declared in Content-Type; the page's own <meta> is the fallback.
    Local files and crawled pages share this one entry point, so both get the same main-content
    extraction (`html_content`, imported here so that only ingest ever loads its library).
    """
    from assistant.retrieval.html_content import extract

    text, encoding = _decode(source, raw, charset or _html_charset(raw))
    try:
        page = extract(text)
    except (AssertionError, ValueError) as exc:  # html.parser's rare hard failures
        raise IngestError(f"{source}: malformed HTML ({_one_line(exc)})") from None
    if not any(b.text.strip() for b in page.blocks if b.kind != "heading"):
        if page.had_text:
            raise IngestError(f"{source}: no main content (only navigation, headers or footers); nothing to index")
        raise IngestError(f"{source}: no extractable text, nothing to index")
    doc = _new_doc(source, raw, "html", _page_title(page.title, page.first_h1), page.blocks, _with_encoding(encoding))
    doc.url = _absolute_url(page.canonical, source) or _absolute_url(page.og_url, source)
    return doc


# --------------------------------------------------------------------------------------------
# PDF

_PDF_ITEM = re.compile(r"^(?:[•◦▪‣●○■□–-]|\(?\d{1,3}[.)]|[a-z][.)])\s")
_HYPHEN_BREAK = re.compile(r"([^\W\d_])-[ \t]*\n[ \t]*([^\W\d_])")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:160]


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


def _load_pdf(path: Path, raw: bytes) -> LoadedDocument:
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
        raise IngestError(f"{path}: corrupt or unreadable PDF ({_one_line(exc)})") from None

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
    title = _clean_title(meta_title) or _clean_title(first_line)
    return _new_doc(path, raw, "pdf", title, blocks, extra)


_LOADERS: dict[str, Callable[[Path, bytes], LoadedDocument]] = {
    ".md": _load_markdown,
    ".markdown": _load_markdown,
    ".txt": _load_txt,
    ".html": _load_html,
    ".htm": _load_html,
    ".pdf": _load_pdf,
}
