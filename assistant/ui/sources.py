"""How sources appear: side-panel passages, the lines under an answer, and compact widget links.

A source is a retrieved `Hit` with its number `n` (the `[n]` the answer cites). In the full-page
chat each shown source becomes a side element named `[n]`; Chainlit turns every `[n]` in the
message into a link to it (names are matched by substring, so `[n]` is distinctive on purpose).
The widget has no room for side panels, so there sources are plain Markdown links.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from assistant.chat.events import Answer
from assistant.literal_markdown import answer_text, close_fences, escape_inline, link, literal_markdown, quote, safe_url
from assistant.originals import original_link
from assistant.retrieval.types import Hit

SOURCE_TEXT_LIMIT = 2000  # characters of a passage kept in message metadata (feedback records)


def element_name(number: int) -> str:
    """The side element name for source `number`; appears verbatim in the answer text."""
    return f"[{number}]"


def short_source(hit: Hit) -> str:
    """A readable name for where a passage lives: the file name, or host and path of a URL."""
    src = hit.url or hit.source or ""
    if "://" in src:
        parts = urlsplit(src)
        return (parts.netloc + parts.path).rstrip("/") or src
    return PurePosixPath(src.replace("\\", "/")).name or src


def section_path(hit: Hit) -> list[str]:
    """Heading path without a leading repeat of the title (most documents open with it as H1)."""
    path = [h.rstrip(" \u00b6") for h in hit.heading_path if h]  # without Sphinx's permalink mark
    if path and hit.title and f"{hit.title.strip().lower()} ".startswith(f"{path[0].strip().lower()} "):
        path = path[1:]  # the page's H1 repeats its title ("json — JSON encoder" in "json — ... documentation")
    return path


def describe(hit: Hit, *, limit: int = 90) -> str:
    """`Title › Section › Subsection, page 3` as escaped Markdown, for one-line lists."""
    parts = [hit.title or short_source(hit), *section_path(hit)]
    text = " › ".join(parts)
    if hit.page:
        text += f", page {hit.page}"
    return escape_inline(text, limit)


def source_panel(number: int, hit: Hit) -> str:
    """Markdown for the side panel of one source: where it is from, then the exact passage.

    Everything from the document is escaped (or fenced), so a chunk holding `<script>` or broken
    Markdown shows as text and never runs or breaks the layout.
    """
    title = hit.title or short_source(hit)
    target = hit.url or original_link(hit)  # the web page, or this document served by the assistant
    lines = [f"### {link(title, target)}"]
    meta = []
    sections = section_path(hit)
    if sections:
        meta.append("**Section:** " + escape_inline(" › ".join(sections)))
    if hit.page:
        meta.append(f"**Page:** {int(hit.page)}")
    meta.append("**Source:** " + escape_inline(short_source(hit)))
    lines.append("  \n".join(meta))
    lines.append(f"**Passage {int(number)}** · the text the assistant was given:")
    lines.append(quote(literal_markdown(hit.text)) if hit.text.strip() else "> *(empty passage)*")
    if safe_url(target):
        lines.append(link("Open the original document ↗", target))
    return "\n\n".join(lines)


def _numbered(numbers: Iterable[int], sources: Sequence[Hit]) -> list[tuple[int, Hit]]:
    return [(n, sources[n - 1]) for n in numbers if 0 < n <= len(sources)]


def shown_numbers(answer: Answer) -> list[int]:
    """Numbers of the sources listed under an answer: cited first, then also retrieved."""
    seen: list[int] = []
    for n in [*answer.cited, *answer.also_retrieved]:
        if 0 < n <= len(answer.sources) and n not in seen:
            seen.append(n)
    return seen


def _kind_label(answer: Answer, llm_enabled: bool) -> str | None:
    """A retrieval-only label, unless the extractive text already carries one."""
    if answer.kind != "extractive" or "retrieval-only" in answer.text[:200].lower():
        return None
    if llm_enabled:
        return ("*Retrieval-only answer: sentences quoted from the sources, because the language model"
                " could not answer.*")
    return "*Retrieval-only answer: sentences quoted from the sources (no language model is configured).*"


def notices_line(notices: Sequence[str]) -> str | None:
    """All notices as one escaped line (LLM failure, truncation, degraded search...)."""
    clean = [" ".join(n.split()) for n in notices if n and n.strip()]
    if not clean:
        return None
    clean = [n if n[-1] in ".!?)" else n + "." for n in clean]
    return "⚠️ *" + escape_inline(" ".join(clean)) + "*"


def answer_footer(answer: Answer, *, llm_enabled: bool, widget: bool = False) -> str:
    """The lines under an answer: sources, also retrieved, retrieval-only label and notices."""
    lines: list[str] = []
    cited = _numbered(answer.cited, answer.sources)
    also = _numbered([n for n in answer.also_retrieved if n not in answer.cited], answer.sources)
    if widget:
        if cited:
            lines.append("**Sources:** " + " · ".join(_widget_ref(n, h) for n, h in cited))
        if also:
            label = "Closest passages" if answer.kind == "no_answer" else "Also retrieved"
            lines.append(f"*{label}:* " + " · ".join(_widget_ref(n, h, short=True) for n, h in also))
    else:
        if cited:
            lines.append("**Sources:** " + " · ".join(f"{element_name(n)} {describe(h)}" for n, h in cited))
        if also:
            label = "Closest passages (not a match)" if answer.kind == "no_answer" else "Also retrieved"
            lines.append(f"*{label}:* " + " · ".join(f"{element_name(n)} {describe(h, limit=60)}" for n, h in also))
    label = _kind_label(answer, llm_enabled)
    if label:
        lines.append(label)
    notes = notices_line(answer.notices)
    if notes:
        lines.append(notes)
    return "\n\n".join(lines)


def _widget_ref(number: int, hit: Hit, *, short: bool = False) -> str:
    """`\\[1\\] Title › Section` linked to the original when there is a URL, else named by file."""
    label = hit.title or short_source(hit)
    sections = section_path(hit)
    if sections:
        label += " › " + (sections[-1] if short else " › ".join(sections))
    if hit.page:
        label += f", page {hit.page}"
    ref = f"\\[{int(number)}\\] "
    target = hit.url or original_link(hit)
    if safe_url(target):
        linked = ref + link(label if len(label) <= 80 else label[:79] + "…", target)
        return linked if hit.url or short else linked + " (" + escape_inline(short_source(hit), 40) + ")"
    text = escape_inline(label, 80)
    if not short:
        text += " (" + escape_inline(short_source(hit), 40) + ")"
    return ref + text


def answer_markdown(answer: Answer, *, llm_enabled: bool, widget: bool = False) -> str:
    """The full message: the answer text (a model's with its fences closed and HTML escaped), then the footer."""
    footer = answer_footer(answer, llm_enabled=llm_enabled, widget=widget)
    body = answer.text.rstrip()
    body = answer_text(body) if answer.kind == "generated" else close_fences(body)
    return f"{body}\n\n{footer}" if footer and body else (body or footer)


def sources_metadata(answer: Answer) -> list[dict[str, Any]]:
    """What was shown, for the message metadata (and so for feedback records)."""
    cited = set(answer.cited)
    out = []
    for n in shown_numbers(answer):
        hit = answer.sources[n - 1]
        out.append({
            "n": n,
            "cited": n in cited,
            "title": hit.title,
            "source": hit.source,
            "url": hit.url,
            "original_url": original_link(hit),
            "heading": hit.heading,
            "page": hit.page,
            "chunk_id": hit.chunk_id,
            "document_id": hit.document_id,
            "score": round(float(hit.score), 6),
            "similarity": None if hit.similarity is None else round(float(hit.similarity), 4),
            "text": hit.text[:SOURCE_TEXT_LIMIT],
        })
    return out
