"""The naive retrieval baseline every corpus is compared against (issue 9), computed by the bench itself.

No product code: text by a plain tag stripper (script/style dropped), fixed 1,200-character
windows, Okapi BM25 (k1 0.9, b 0.4) over lowercase `\\w+` tokens, e5 exact cosine over the same
windows, and reciprocal rank fusion (k=60) of the two. About forty lines of logic, which is the
point: the product must beat it.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from html.parser import HTMLParser

import numpy as np

WINDOW_CHARS = 1200
K1, B = 0.9, 0.4
RRF_K = 60
_WORD = re.compile(r"\w+")


class _TextOnly(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: object) -> None:
        if tag in ("script", "style"):
            self._skip += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def plain_text(raw: str, html: bool) -> str:
    """All visible text of a page (HTML tags stripped) with runs of white space collapsed."""
    if html:
        parser = _TextOnly()
        parser.feed(raw)
        raw = " ".join(parser.parts)
    return " ".join(raw.split())


def windows(text: str, size: int = WINDOW_CHARS) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)] or [""]


def tokens(text: str) -> list[str]:
    return _WORD.findall(text.lower())


class BM25:
    """Okapi BM25 over in-memory token lists (Lucene's always-positive IDF)."""

    def __init__(self, docs: Sequence[str]) -> None:
        self.tfs = [Counter(tokens(d)) for d in docs]
        self.lengths = np.array([sum(tf.values()) for tf in self.tfs], dtype=np.float64)
        self.avgdl = float(self.lengths.mean()) if len(docs) else 1.0
        df: Counter[str] = Counter()
        for tf in self.tfs:
            df.update(tf.keys())
        n = len(docs)
        self.idf = {w: math.log(1 + (n - c + 0.5) / (c + 0.5)) for w, c in df.items()}
        self.postings: dict[str, list[int]] = {}
        for i, tf in enumerate(self.tfs):
            for w in tf:
                self.postings.setdefault(w, []).append(i)

    def rank(self, query: str, k: int) -> list[int]:
        scores: dict[int, float] = {}
        for w in set(tokens(query)):
            idf = self.idf.get(w)
            if idf is None:
                continue
            for i in self.postings[w]:
                tf = self.tfs[i][w]
                norm = K1 * (1 - B + B * self.lengths[i] / self.avgdl)
                scores[i] = scores.get(i, 0.0) + idf * tf * (K1 + 1) / (tf + norm)
        return sorted(scores, key=lambda i: (-scores[i], i))[:k]


def exact_rank(qvec: np.ndarray, vectors: np.ndarray, k: int) -> list[int]:
    sims = vectors @ qvec
    return [int(i) for i in np.argsort(-sims, kind="stable")[:k]]


def rrf(lists: Sequence[Sequence[int]], k: int, rrf_k: int = RRF_K) -> list[int]:
    scores: dict[int, float] = {}
    for ranked in lists:
        for rank, i in enumerate(ranked, 1):
            scores[i] = scores.get(i, 0.0) + 1.0 / (rrf_k + rank)
    return sorted(scores, key=lambda i: (-scores[i], i))[:k]
