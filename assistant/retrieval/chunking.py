"""Structure-aware, token-bounded chunker: loader `Block`s in, stored and embedded `Chunk`s out.

Why structure-aware: a chunk that stays inside one section, carries its heading path and never
cuts a code block in half retrieves better and cites better than fixed windows of text.

Rules, in order of priority:

* Budgets are measured with the embedding model's own tokenizer (`tokens.count_tokens`, which
  counts the `passage: ` prefix and the special tokens too; by default through the equal but
  cached `tokens.passage_token_counter`). `count_tokens(chunk.text) <= max_tokens` holds for
  every chunk, and so does `count_tokens(embedding_text(title, chunk)) <= hard_limit`: the text
  the store really embeds, with the title and heading context line. That context line is usually
  well under 60 tokens (headings in the path are clipped to `MAX_HEADING_CHARS`), so the
  defaults, 320 + ~60 + prefix, stay far below e5's 512; the hard limit is nevertheless checked
  exactly, chunk by chunk, and a chunk with a long context simply holds less text.
* A heading starts a new chunk and updates the heading path (a heading of level L replaces the
  path entries of level >= L). A page change starts a new chunk too, so each chunk has one page.
* Inside a section, blocks are packed greedily. A block too big for one chunk is split on
  sentences (and line breaks), a sentence on words, a word on characters. A code block is kept
  whole when it fits; otherwise it is split on lines and every piece is re-wrapped in the
  block's own fences, so each piece still renders as code.
* When a section continues in a new chunk, that chunk starts with the trailing sentences of the
  previous one, at most `overlap_tokens` in total (never code, never across a page change).

Deterministic: the same blocks and settings always give the same chunks.
"""

from __future__ import annotations

import itertools
import re
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from assistant.retrieval.chunk_spans import TEXT_LEVELS, Span, add_trimmed, sentence_spans, word_spans
from assistant.retrieval.errors import IngestError
from assistant.retrieval.types import Block, Chunk, LoadedDocument, embedding_text

TokenCounter = Callable[[str], int]

MAX_HEADING_CHARS = 120  # longer headings are clipped in `Chunk.heading_path` (they are embedded)
_CHAR_PROBE_PER_TOKEN = 32  # a token is never wider than this many characters when splitting words

# Both ends of a fenced code block as the loaders write it (no backtick in the info string).
_FENCE_LINE = re.compile(r"^ {0,3}(`{3,}|~{3,})[^`]*$")


@dataclass(frozen=True)
class _Atom:
    """The smallest unit the packer moves: a slice of one block's text that fits a chunk alone.

    Consecutive atoms of one block render as one slice of the block (original whitespace and line
    breaks kept); a `fence` pair wraps split code pieces so each chunk's code stays fenced.
    """

    block: int
    src: str
    start: int
    end: int
    tokens: int  # count of the atom rendered alone (with its fences)
    code: bool = False
    fence: tuple[str, str] | None = None
    fence_tokens: int = 0  # what two neighbouring fenced atoms save by sharing one pair of fences


def _clip_heading(text: str) -> str:
    text = " ".join(text.split())
    if len(text) <= MAX_HEADING_CHARS:
        return text
    cut = text[: MAX_HEADING_CHARS - 1]
    if " " in cut:
        cut = cut.rsplit(" ", 1)[0]
    return cut + "…"


class _Chunker:
    def __init__(self, count: TokenCounter, max_tokens: int, overlap_tokens: int, hard_limit: int, title: str) -> None:
        self.count = count
        self.max_tokens = max_tokens
        self.overlap_tokens = overlap_tokens
        self.hard_limit = hard_limit
        self.title = title
        # The fixed cost (prefix, specials) every text pays once. Not count(""): e5 reads an empty
        # passage as 5 tokens but "a" as 5 too, so one-token words would look free and the packer
        # would take a whole 1 MB line before settling (minutes of exact counts).
        self.base = max(min(count(""), count("a") + count("b") - count("a b")), 0)
        self.chunks: list[Chunk] = []
        self.path: tuple[str, ...] = ()
        self._context_cost = 0

    # ---- measuring
    def measure(self, text: str) -> int | None:
        """Token count of `text` if it fits both budgets as a chunk of the current section."""
        if len(text) > self.max_tokens * _CHAR_PROBE_PER_TOKEN:
            return None  # cannot fit, and counting a 1 MB paragraph costs seconds (at every split level)
        n = self.count(text)
        if n > self.max_tokens:
            return None
        if self.title or self.path:
            if n + self._context_cost > self.hard_limit + 8:  # clearly over: skip the exact count
                return None
            full = self.count(embedding_text(self.title, Chunk(0, text, self.path)))
            if full > self.hard_limit:
                return None
        elif n > self.hard_limit:
            return None
        return n

    # ---- driving
    def run(self, blocks: Sequence[Block]) -> list[Chunk]:
        levels: list[tuple[int, str]] = []
        segment: list[tuple[int, Block]] = []
        for index, block in enumerate(blocks):
            if block.kind == "heading":
                self.section(segment)
                segment = []
                text = _clip_heading(block.text)
                if text:
                    level = min(max(block.level, 1), 6)
                    levels = [(lv, t) for lv, t in levels if lv < level] + [(level, text)]
                    self.path = tuple(t for _, t in levels)
                continue
            if not block.text.strip():
                continue
            if segment and segment[-1][1].page != block.page:
                self.section(segment)
                segment = []
            segment.append((index, block))
        self.section(segment)
        return self.chunks

    def section(self, items: list[tuple[int, Block]]) -> None:
        """Chunk one run of blocks that share a heading path and a page."""
        if not items:
            return
        probe = "x"
        self._context_cost = 0
        if self.title or self.path:
            full = self.count(embedding_text(self.title, Chunk(0, probe, self.path)))
            self._context_cost = full - self.count(probe)
        if self.measure(probe) is None:
            raise ValueError(
                f"max_tokens={self.max_tokens}/hard_limit={self.hard_limit} leave no room for text "
                f"after the title and heading path {' > '.join(self.path)!r}"
            )
        atoms: list[_Atom] = []
        for index, block in items:
            if block.kind == "code":
                atoms.extend(self.code_atoms(index, block.text))
            else:
                atoms.extend(self.pieces(index, block.text, 0, len(block.text), TEXT_LEVELS))
        page = items[0][1].page
        for group in self.pack(atoms):
            text = _render(group)
            self.chunks.append(Chunk(len(self.chunks), text, self.path, page, self.count(text)))

    # ---- atoms
    def pieces(
        self,
        block: int,
        src: str,
        start: int,
        end: int,
        levels: tuple[Callable[[str, int, int], list[Span]], ...],
        code: bool = False,
        fence: tuple[str, str] | None = None,
        fence_tokens: int = 0,
    ) -> list[_Atom]:
        """Split src[start:end] by the first level that makes pieces fit, recursively."""
        spans = [(start, end)]
        if not code:  # text is trimmed; code keeps its indentation
            spans = []
            add_trimmed(spans, src, start, end)
        out: list[_Atom] = []
        for s, e in spans:
            n = self.measure(_wrap(src[s:e], fence))
            if n is not None:
                out.append(_Atom(block, src, s, e, n, code, fence, fence_tokens))
            elif levels:
                for ss, ee in levels[0](src, s, e):
                    out.extend(self.pieces(block, src, ss, ee, levels[1:], code, fence, fence_tokens))
            else:
                out.extend(self.char_atoms(block, src, s, e, code, fence, fence_tokens))
        return out

    def char_atoms(
        self,
        block: int,
        src: str,
        start: int,
        end: int,
        code: bool,
        fence: tuple[str, str] | None,
        fence_tokens: int,
    ) -> list[_Atom]:
        """Cut one huge word into the longest prefixes that fit (binary search, deterministic).

        The previous piece's length is probed first and the search gallops up from it: pieces of
        one word are usually alike, so a 1 MB "word" costs ~2 token counts a piece instead of ~14.
        """
        out: list[_Atom] = []
        pos = start
        guess = 0
        while pos < end:
            lo, hi = 0, min(end - pos, self.max_tokens * _CHAR_PROBE_PER_TOKEN)
            best: int | None = None
            if guess:
                probe = min(guess, hi)
                n = self.measure(_wrap(src[pos : pos + probe], fence))
                if n is None:
                    hi = probe - 1
                else:
                    lo, best, step = probe, n, 1
                    while lo < hi:
                        probe = min(lo + step, hi)
                        n = self.measure(_wrap(src[pos : pos + probe], fence))
                        if n is None:
                            hi = probe - 1
                            break
                        lo, best, step = probe, n, step * 2
            while lo < hi:
                mid = (lo + hi + 1) // 2
                n = self.measure(_wrap(src[pos : pos + mid], fence))
                if n is not None:
                    lo, best = mid, n
                else:
                    hi = mid - 1
            if lo == 0 or best is None:
                raise ValueError(f"max_tokens={self.max_tokens} is too small to hold even one character of text")
            out.append(_Atom(block, src, pos, pos + lo, best, code, fence, fence_tokens))
            pos += lo
            guess = lo
        return out

    def code_atoms(self, block: int, text: str) -> list[_Atom]:
        """A code block whole if it fits, else fenced pieces of whole lines (words if need be)."""
        src = text.strip("\n")
        n = self.measure(src)
        if n is not None:
            return [_Atom(block, src, 0, len(src), n, code=True)]
        lines = src.split("\n")
        fence: tuple[str, str] | None = None
        body_start, body_end = 0, len(src)
        if len(lines) >= 3 and _FENCE_LINE.match(lines[0]) and _FENCE_LINE.match(lines[-1]):
            fence = (lines[0].rstrip(), lines[-1].strip())
            body_start, body_end = len(lines[0]) + 1, len(src) - len(lines[-1]) - 1
            if self.measure(_wrap("x", fence)) is None:  # a long info string: keep a bare fence
                fence = (fence[1], fence[1])
                if self.measure(_wrap("x", fence)) is None:
                    fence = None
        fence_tokens = 0
        if fence is not None:
            fence_tokens = max(self.count(_wrap("", fence)) - self.base, 0)
        out: list[_Atom] = []
        pos = body_start
        for line in src[body_start:body_end].split("\n"):
            line_end = pos + len(line)
            if line.strip():
                stripped_end = pos + len(line.rstrip())
                out.extend(self.pieces(block, src, pos, stripped_end, (word_spans,), True, fence, fence_tokens))
            pos = line_end + 1
        return out

    # ---- packing
    def estimate(self, atoms: Sequence[_Atom]) -> int:
        """Cheap token estimate of `_render(atoms)`; the exact count is checked before emitting."""
        total = atoms[0].tokens
        for prev, atom in itertools.pairwise(atoms):
            total += self._join_cost(prev, atom)
        return total

    def _join_cost(self, prev: _Atom, atom: _Atom) -> int:
        """What `atom` adds to the estimate when it follows `prev`."""
        cost = atom.tokens - self.base
        if atom.fence is not None and prev.fence == atom.fence and prev.block == atom.block:
            cost -= atom.fence_tokens
        return cost

    def pack(self, atoms: list[_Atom]) -> list[list[_Atom]]:
        """Greedy packing with overlap; estimates decide, exact counts confirm."""
        limit = min(self.max_tokens, self.hard_limit - self._context_cost)
        out: list[list[_Atom]] = []
        queue = deque(atoms)
        current: list[_Atom] = []
        n_overlap = 0  # the first n atoms of `current` repeat the end of the previous chunk
        est = 0  # == self.estimate(current), kept up to date: a 1 MB line is ~200k atoms
        while True:
            if queue:
                atom = queue[0]
                grown = atom.tokens if not current else est + self._join_cost(current[-1], atom)
                if not current or grown <= limit:
                    current.append(queue.popleft())
                    est = grown
                    continue
                if n_overlap == len(current):  # overlap leaves no room: shorten it from the front
                    first = current.pop(0)
                    if current:
                        est += current[0].tokens - first.tokens - self._join_cost(first, current[0])
                    n_overlap -= 1
                    continue
            elif n_overlap == len(current):
                break
            current, n_overlap, back = self.settle(current, n_overlap)
            out.append(current)
            queue.extendleft(reversed(back))
            current = self.overlap(current) if queue else []
            n_overlap = len(current)
            est = self.estimate(current) if current else 0
        return out

    def settle(self, atoms: list[_Atom], n_overlap: int) -> tuple[list[_Atom], int, list[_Atom]]:
        """Give back new atoms from the end (then overlap from the front) until the chunk fits.

        Token counts are not additive (tiny atoms such as the dots of a table of contents cost
        more together than apart), so the estimate can overshoot a lot: a binary search over how
        many new atoms to keep needs only a few exact counts.
        """
        if self.measure(_render(atoms)) is not None:
            return list(atoms), n_overlap, []
        while n_overlap and self.measure(_render(atoms[: n_overlap + 1])) is None:
            atoms = atoms[1:]  # even one new atom does not fit after the overlap: shorten it
            n_overlap -= 1
        lo, hi = n_overlap + 1, len(atoms) - 1  # atoms[:lo] fits (one atom alone always does)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.measure(_render(atoms[:mid])) is not None:
                lo = mid
            else:
                hi = mid - 1
        return list(atoms[:lo]), n_overlap, list(atoms[lo:])

    def overlap(self, chunk: list[_Atom]) -> list[_Atom]:
        """Trailing sentences of a chunk, at most `overlap_tokens` together, as atoms."""
        if self.overlap_tokens <= 0 or not chunk or chunk[-1].code:
            return []
        last = chunk[-1]
        start = last.start
        for atom in reversed(chunk[:-1]):
            if atom.code or atom.block != last.block:
                break
            start = atom.start
        spans = sentence_spans(last.src, start, last.end)
        taken: list[_Atom] = []
        for s, e in reversed(spans):
            if self.count(last.src[s : last.end]) > self.overlap_tokens:
                break
            n = self.measure(last.src[s:e])
            if n is None:
                break
            taken.insert(0, _Atom(last.block, last.src, s, e, n))
        return taken


def _wrap(text: str, fence: tuple[str, str] | None) -> str:
    return f"{fence[0]}\n{text}\n{fence[1]}" if fence else text


def _render(atoms: Sequence[_Atom]) -> str:
    """Join atoms: runs of one block become one slice of it, other runs are separated by a blank line."""
    parts: list[str] = []
    i = 0
    while i < len(atoms):
        first = atoms[i]
        j = i
        while (
            j + 1 < len(atoms)
            and atoms[j + 1].block == first.block
            and atoms[j + 1].fence == first.fence
            and atoms[j + 1].start >= atoms[j].end
        ):
            j += 1
        parts.append(_wrap(first.src[first.start : atoms[j].end], first.fence))
        i = j + 1
    return "\n\n".join(parts)


def chunk_blocks(
    blocks: Sequence[Block],
    *,
    max_tokens: int = 320,
    overlap_tokens: int = 48,
    count_tokens: TokenCounter | None = None,
    hard_limit: int = 500,
    title: str = "",
) -> list[Chunk]:
    """Split a document's blocks into chunks (see the module docstring for the rules).

    `count_tokens` defaults to the e5 tokenizer's passage count (prefix and specials included)
    through `assistant.retrieval.tokens.passage_token_counter`: the numbers of `count_tokens`, from
    cached word counts, because the chunker counts every candidate piece. Pass the document
    `title` the store embeds with each chunk so the `hard_limit` check covers it;
    `chunk_document` does. Raises ValueError for settings that cannot hold any text.
    """
    if max_tokens < 1 or hard_limit < 1:
        raise ValueError(f"max_tokens ({max_tokens}) and hard_limit ({hard_limit}) must be positive")
    if not 0 <= overlap_tokens < max_tokens:
        raise ValueError(f"overlap_tokens ({overlap_tokens}) must be >= 0 and below max_tokens ({max_tokens})")
    if count_tokens is None:
        from assistant.retrieval.tokens import passage_token_counter

        count_tokens = passage_token_counter()
    return _Chunker(count_tokens, max_tokens, overlap_tokens, hard_limit, title).run(blocks)


def chunk_document(doc: LoadedDocument, **kwargs: Any) -> list[Chunk]:
    """Chunk a loaded document, with its title counted in the hard limit.

    A document whose title and headings leave no room for text under the limits raises
    IngestError naming it, so a batch ingest skips that file and goes on.
    """
    kwargs.setdefault("title", doc.title)
    try:
        return chunk_blocks(doc.blocks, **kwargs)
    except ValueError as err:
        raise IngestError(f"{doc.source}: cannot chunk ({err})") from None
