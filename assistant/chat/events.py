"""What `ChatPipeline.run` yields, in order: [QueryRewritten], Retrieved, Token*, Answer.

Plain dataclasses so the UI (and tests) can match on type without importing anything heavy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from assistant.retrieval.types import Hit, SearchResult

ANSWER_KINDS = ("generated", "extractive", "no_answer")


@dataclass
class QueryRewritten:
    """The follow-up was rewritten into a standalone search query (show it in small print)."""

    original: str
    query: str
    method: str = "rule"  # "llm" | "rule": who rewrote it


@dataclass
class Retrieved:
    """The retriever's result, before any answer text."""

    result: SearchResult
    search_ms: float | None = None  # the search alone
    rewrite_ms: float | None = None  # condensing the follow-up before it (None: not attempted)
    rewrite_method: str | None = None  # "llm" | "rule" (None: not attempted)


@dataclass
class Token:
    """Answer text to append, already citation-checked."""

    text: str


@dataclass
class Answer:
    """The final answer. `text` equals the concatenated Token texts; notices are separate lines."""

    text: str
    kind: str  # "generated" | "extractive" | "no_answer"
    sources: list[Hit] = field(default_factory=list)  # numbered: sources[i] is [i+1]
    cited: list[int] = field(default_factory=list)  # numbers cited, in first-appearance order
    also_retrieved: list[int] = field(default_factory=list)  # retrieved, never cited
    invalid_citations: list[int] = field(default_factory=list)  # removed numbers
    notices: list[str] = field(default_factory=list)  # one-liners to show under the answer
    truncated: bool = False  # the answer was cut off (stream lost or length limit)
    query: str = ""  # what was searched
    unsupported: bool = False  # a generated answer that cites no source at all

    def cited_sources(self) -> list[Hit]:
        """Cited hits in citation order (for the sources panel)."""
        return [self.sources[n - 1] for n in self.cited if 0 < n <= len(self.sources)]

    def also_retrieved_sources(self) -> list[Hit]:
        """Retrieved but uncited hits (the collapsed "also retrieved" list)."""
        return [self.sources[n - 1] for n in self.also_retrieved if 0 < n <= len(self.sources)]


Event = QueryRewritten | Retrieved | Token | Answer
