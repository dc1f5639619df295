"""A realistic mixed-format ingest corpus, generated from BEIR SciFact abstracts (for bench/ingest.py).

Each generated document gathers consecutive abstracts of ../shared/data/beir-scifact/corpus.jsonl
(read there, never copied into the repository) as sections: the abstract's title is a heading and
its text is split into paragraphs of a few sentences. Formats rotate md, html, pdf, txt, so every
loader is exercised: Markdown with front matter, HTML with page chrome the loader must drop, a PDF
with wrapped lines and several pages (built by tests/fakes/documents.make_pdf, Latin-1 text), and
plain text. The files go to a cache folder; the same arguments always give the same bytes.
"""

from __future__ import annotations

import html
import json
import re
import textwrap
import unicodedata
from pathlib import Path

from bench._common import REPO
from tests.fakes.documents import make_pdf

SCIFACT = REPO.parent / "shared" / "data" / "beir-scifact" / "corpus.jsonl"
FORMATS = ("md", "html", "pdf", "txt")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(])")
PDF_LINES_PER_PAGE = 46


def _abstracts(count: int) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    with SCIFACT.open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if row["text"].strip():
                out.append((row["title"].strip(), row["text"].strip()))
            if len(out) == count:
                break
    if len(out) < count:
        raise SystemExit(f"{SCIFACT} holds only {len(out)} abstracts, {count} wanted")
    return out


def _paragraphs(text: str, sentences: int = 3) -> list[str]:
    parts = _SENTENCE_END.split(text)
    return [" ".join(parts[i:i + sentences]) for i in range(0, len(parts), sentences)]


def _latin1(text: str) -> str:
    """What the Helvetica PDF can carry: accents kept, other characters decomposed or dropped."""
    text = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in text if ord(ch) < 256 and not unicodedata.combining(ch))


def _markdown(n: int, sections: list[tuple[str, str]]) -> bytes:
    lines = ["---", f"title: SciFact collection {n}", f"url: https://example.org/scifact/{n}",
             "tags: [scifact, bench]", "---", "", f"# SciFact collection {n}", ""]
    for title, text in sections:
        lines += [f"## {title}", ""]
        for para in _paragraphs(text):
            lines += [para, ""]
    return "\n".join(lines).encode()


def _html(n: int, sections: list[tuple[str, str]]) -> bytes:
    body = []
    for title, text in sections:
        body.append(f"<section><h2>{html.escape(title)}</h2>")
        body += [f"<p>{html.escape(p)}</p>" for p in _paragraphs(text)]
        body.append("</section>")
    return (
        "<!doctype html><html><head><meta charset=\"utf-8\">"
        f"<title>SciFact collection {n}</title><style>body {{ font: 14px sans-serif }}</style>"
        f"<link rel=\"canonical\" href=\"https://example.org/scifact/{n}.html\"></head><body>"
        "<nav><a href=\"/\">Home</a> <a href=\"/about\">About</a></nav>"
        f"<main><h1>SciFact collection {n}</h1>{''.join(body)}</main>"
        "<footer>Generated for the ingest benchmark</footer><script>console.log('x')</script>"
        "</body></html>"
    ).encode()


def _pdf(n: int, sections: list[tuple[str, str]]) -> bytes:
    lines: list[str] = [f"SciFact collection {n}", ""]
    for title, text in sections:
        lines += [*textwrap.wrap(_latin1(title), 90), ""]
        for para in _paragraphs(text):
            lines += [*textwrap.wrap(_latin1(para), 90), ""]
    pages = [lines[i:i + PDF_LINES_PER_PAGE] for i in range(0, len(lines), PDF_LINES_PER_PAGE)]
    return make_pdf(pages, title=f"SciFact collection {n}")


def _text(n: int, sections: list[tuple[str, str]]) -> bytes:
    lines = [f"SciFact collection {n}", ""]
    for title, text in sections:
        lines += [title, ""]
        lines += [line for para in _paragraphs(text) for line in (para, "")]
    return "\n".join(lines).encode()


_WRITERS = {"md": _markdown, "html": _html, "pdf": _pdf, "txt": _text}


def build_corpus(folder: Path, docs: int, per_doc: int) -> list[Path]:
    """Write `docs` files of `per_doc` abstracts each into `folder` (rewritten when absent); return them."""
    folder.mkdir(parents=True, exist_ok=True)
    wanted = [folder / f"scifact-{n:03d}.{FORMATS[n % len(FORMATS)]}" for n in range(docs)]
    if all(p.exists() for p in wanted):
        return wanted
    abstracts = _abstracts(docs * per_doc)
    for n, path in enumerate(wanted):
        sections = abstracts[n * per_doc:(n + 1) * per_doc]
        path.write_bytes(_WRITERS[FORMATS[n % len(FORMATS)]](n, sections))
    return wanted
