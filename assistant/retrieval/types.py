"""Plain data passed between loaders, chunker, store, retriever and chat.

No behaviour beyond small derived properties, so every layer can share them without imports
going in circles.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

BlockKind = Literal["heading", "text", "code"]


@dataclass(frozen=True)
class Block:
    """One structural piece of a loaded document, in reading order.

    `heading` blocks carry `level` (1-6) and open a section; `code` blocks should stay whole
    when they fit a chunk; `text` is a paragraph (or list item run, table, PDF paragraph).
    """

    kind: BlockKind
    text: str
    level: int = 0
    page: int | None = None


@dataclass
class LoadedDocument:
    """A file turned into blocks by a loader, before chunking."""

    source: str  # path (absolute, posix) or URL; unique key of the document
    title: str
    blocks: list[Block]
    content_hash: str  # sha256 of the raw bytes
    url: str | None = None  # link to the original, when there is one
    metadata: dict[str, Any] = field(default_factory=dict)  # jsonb; e.g. {"type": "md"}


@dataclass(frozen=True)
class Chunk:
    """A token-bounded piece of a document, as stored and embedded."""

    ordinal: int
    text: str
    heading_path: tuple[str, ...] = ()
    page: int | None = None
    token_count: int = 0


def section_path(title: str, heading_path: tuple[str, ...] | list[str]) -> list[str]:
    """The headings below the title: a page's H1 usually *is* its title, so it is not repeated."""
    path = [h for h in heading_path if h]
    if path and path[0].strip().casefold() == title.strip().casefold():
        path = path[1:]
    return path


def embedding_text(title: str, chunk: Chunk) -> str:
    """The text actually embedded for a chunk: title and heading path give it context."""
    context = " > ".join([t for t in (title, *section_path(title, chunk.heading_path)) if t])
    return f"{context}\n\n{chunk.text}" if context else chunk.text


@dataclass
class Hit:
    """One retrieved chunk with everything a citation needs."""

    chunk_id: int
    document_id: int
    rank: int  # 1-based position in the final list
    score: float  # fused RRF score in hybrid mode, else the mode's own score
    title: str
    source: str
    text: str
    heading_path: list[str] = field(default_factory=list)
    page: int | None = None
    ordinal: int = 0
    url: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    vector_rank: int | None = None
    similarity: float | None = None  # cosine similarity, 1 - cosine distance
    text_rank: int | None = None
    text_score: float | None = None  # full-text score: Okapi BM25
    text_matched: float | None = None  # share of the question's IDF mass this chunk's words matched (0-1)

    @property
    def heading(self) -> str:
        """Section headings below the document title, e.g. "Install > Linux"."""
        return " > ".join(section_path(self.title, self.heading_path))

    def to_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "score": self.score,
            "title": self.title,
            "source": self.source,
            "url": self.url,
            "heading": self.heading,
            "heading_path": list(self.heading_path),
            "page": self.page,
            "text": self.text,
            "chunk_id": self.chunk_id,
            "document_id": self.document_id,
            "ordinal": self.ordinal,
            "vector_rank": self.vector_rank,
            "similarity": self.similarity,
            "text_rank": self.text_rank,
            "text_score": self.text_score,
            "text_matched": self.text_matched,
            "metadata": self.metadata,
        }


SearchMode = Literal["hybrid", "vector", "text"]
SEARCH_MODES: tuple[str, ...] = ("hybrid", "vector", "text")


@dataclass
class SearchResult:
    """What the retriever returns: hits plus how they were obtained."""

    query: str
    mode: str
    hits: list[Hit]
    degraded: bool = False  # True when the embedder failed and only full-text ran
    degraded_reason: str | None = None
    notices: list[str] = field(default_factory=list)  # e.g. "query truncated to 512 tokens"
    timings_ms: dict[str, float] = field(default_factory=dict)
    relevant: bool | None = None  # whether any hit is worth answering from (assistant/retrieval/relevance.py)
    relevance_reason: str | None = None  # one line saying why

    def to_dict(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "mode": self.mode,
            "relevant": self.relevant,
            "relevance_reason": self.relevance_reason,
            "degraded": self.degraded,
            "degraded_reason": self.degraded_reason,
            "notices": list(self.notices),
            "timings_ms": {k: round(v, 2) for k, v in self.timings_ms.items()},
            "hits": [h.to_dict() for h in self.hits],
        }
