"""The collapsible "document search" step: what was searched, how, what came back, how long it took.

Shown above every answer so a reader can see why the answer says what it says: the query actually
used (a rewritten follow-up differs from what was typed), the hits with their scores, the time
taken, and whether search ran degraded (full-text only, because the embedder was down).
"""

from __future__ import annotations

from assistant.literal_markdown import escape_inline
from assistant.retrieval.types import SearchResult
from assistant.ui.sources import section_path, short_source

MODE_LABELS = {"hybrid": "hybrid (vectors + full-text)", "vector": "vector only", "text": "full-text only"}


def _ms(value: float | None) -> str:
    if value is None:
        return "?"
    return f"{value:.0f} ms" if value < 10_000 else f"{value / 1000:.1f} s"


def step_title(result: SearchResult | None, elapsed_ms: float | None = None, rewrite_ms: float | None = None) -> str:
    """The one-line summary shown on the collapsed step, e.g. `document search · 5 passages · 42 ms`.

    `rewrite_ms` is the time the language model took to rewrite a follow-up before the search:
    shown apart, so a slow model is not mistaken for a slow search.
    """
    if result is None:
        return "document search"
    n = len(result.hits)
    parts = ["document search"]
    if result.degraded:
        parts[0] += " (full-text only)"
    parts.append(f"{n} passage{'s' if n != 1 else ''}")
    total = elapsed_ms if elapsed_ms is not None else result.timings_ms.get("total_ms")
    if total is not None:
        parts.append(_ms(total))
    if rewrite_ms is not None:
        parts.append(f"follow-up rewrite {_ms(rewrite_ms)}")
    return " · ".join(parts)


def retrieval_markdown(result: SearchResult, *, typed: str | None = None, filters: str | None = None,
                       elapsed_ms: float | None = None, rewrite_ms: float | None = None) -> str:
    """Markdown body of the step. `typed` is the user's question when the query was rewritten."""
    lines: list[str] = []
    lines.append("**Searched for:** " + escape_inline(result.query, 300))
    if typed and " ".join(typed.split()) != " ".join(result.query.split()):
        lines.append("*Rewritten from your follow-up:* " + escape_inline(typed, 300))
    how = [f"**Mode:** {MODE_LABELS.get(result.mode, escape_inline(result.mode))}"]
    if filters:
        how.append("**Filter:** " + escape_inline(filters, 120))
    timings = result.timings_ms
    detail = []
    if "embed_ms" in timings:
        detail.append(f"embedding {_ms(timings['embed_ms'])}")
    if "search_ms" in timings:
        detail.append(f"database {_ms(timings['search_ms'])}")
    total = elapsed_ms if elapsed_ms is not None else timings.get("total_ms")
    how.append(f"**Time:** {_ms(total)}" + (f" ({', '.join(detail)})" if detail else ""))
    if rewrite_ms is not None:
        how.append(f"**Follow-up rewrite:** {_ms(rewrite_ms)} (language model, before the search)")
    lines.append(" · ".join(how))
    if result.degraded:
        reason = escape_inline(result.degraded_reason or "the embedding service failed", 200)
        lines.append(f"⚠️ **Degraded: full-text only.** The embedder is unavailable ({reason}), so only"
                     " keyword search ran.")
    for notice in result.notices:
        lines.append("⚠️ " + escape_inline(notice, 300))
    if not result.hits:
        lines.append("*No passage matched.*")
        return "\n\n".join(lines)
    table = ["| # | Score | Similarity | Document | Section |", "|---:|---:|---:|---|---|"]
    for i, hit in enumerate(result.hits, 1):
        sim = "–" if hit.similarity is None else f"{hit.similarity:.3f}"
        section = " › ".join(section_path(hit))
        if hit.page:
            section = (section + ", " if section else "") + f"page {hit.page}"
        table.append(
            f"| {i} | {hit.score:.4f} | {sim} | {escape_inline(hit.title or short_source(hit), 60)}"
            f" | {escape_inline(section, 70) or '–'} |"
        )
    lines.append("\n".join(table))
    return "\n\n".join(lines)
