"""Citation markers in model output: checked, normalised and filtered, also while streaming.

The model is asked to cite sources as `[n]`. Models also write `[1, 2]`, `[1][2]`, `[1-3]` or cite
numbers that were never given (`[9]` with five sources). `StreamingCitationFilter` handles all of
that incrementally, so the UI can show tokens as they arrive and never flash a bogus `[9]`:

- a valid group is re-emitted as adjacent single markers (`[1, 2]` -> `[1][2]`), because the UI links
  source elements by the exact substring `[n]`;
- numbers with no source are removed (and recorded in `invalid`); a group left empty disappears
  together with the space before it, so "works [9]." becomes "works.";
- a `[` at the end of a chunk is held back until the group is complete ("[", "1", "]" arrive as
  three chunks and come out as one `[1]`);
- text inside code spans and fenced code blocks is never touched (`items[1]` is code, not a citation),
  except a code span holding nothing but a citation (`` `[2]` ``): models format citations that way,
  and left as code a bogus number would survive and a valid one would not link;
- the space before a removed group is also dropped before a closing `**`, `_` or quote, so
  "**fast [9]**" becomes "**fast**" (not "**fast **", which Markdown no longer reads as bold);
- anything else in brackets (`[x]`, `[see above]`, Markdown link text) passes through unchanged.

`parse_citations` runs the same filter over a complete text, so both paths agree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_GROUP_CHARS = frozenset("0123456789 ,;-\u2013")
_GROUP = re.compile(r"\s*\d+(?:\s*[-\u2013]\s*\d+)?(?:\s*(?:[,;]\s*|\s)\s*\d+(?:\s*[-\u2013]\s*\d+)?)*\s*")
_NEGATIVE = re.compile(r"\s*-\s*(\d+)\s*")
_ITEM = re.compile(r"(\d+)(?:\s*[-\u2013]\s*(\d+))?")
_MAX_GROUP = 40  # longer bracket contents are never a citation group
_MAX_RANGE = 20
_CLOSE_PUNCT = frozenset(".,;:!?)]}\u201d\u2019\u00bb")
_DELIMS = frozenset("*_\"'~")  # emphasis and quotes: closing ones must stay glued to their word
_CODE_CITATION = re.compile(r"\[([^\[\]]*)\]")
_ANY_GROUP = re.compile(r"\s?\[" + _GROUP.pattern + r"\]")


def _numbers(inner: str) -> list[int] | None:
    """The numbers of a citation group's inside ("1, 2", "1-3"), or None when it is not one.

    A lone negative number ("[-1]") is a (bogus) citation too; "[-1, 1]" is an interval, not one.
    """
    negative = _NEGATIVE.fullmatch(inner)
    if negative:
        return [-int(negative.group(1))]
    if not _GROUP.fullmatch(inner):
        return None
    out: list[int] = []
    for m in _ITEM.finditer(inner):
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) else lo
        if hi < lo or hi - lo > _MAX_RANGE:
            out.extend([lo, hi] if m.group(2) else [lo])
        else:
            out.extend(range(lo, hi + 1))
    return out


class StreamingCitationFilter:
    """Feed model output chunks in; get back text safe to show, with citations checked.

    `feed(chunk)` returns what can be shown now; `flush()` returns the rest at the end. The
    concatenation of all returned strings is the final answer text.
    """

    def __init__(self, n_sources: int) -> None:
        self.n_sources = n_sources
        self.cited: list[int] = []  # valid numbers, first-appearance order
        self.invalid: list[int] = []  # removed numbers, first-appearance order
        self._out: list[str] = []
        self._emitted: list[str] = []
        self._last = ""  # last character emitted ("" at the start)
        self._ws = ""  # held spaces/tabs (dropped if a removed group follows them)
        self._bracket: str | None = None  # "[..." being collected
        self._ticks = 0  # backticks seen in a row, not yet classified
        self._fence = False  # inside ``` code block
        self._inline = 0  # length of the backtick run that opened an inline code span
        self._after_removed = False
        self._delim = ""  # emphasis/quote characters after a removed group, held until we know they close
        self._code: str | None = None  # an inline code span held while it may be a citation (`[2]`)

    # -- public ----------------------------------------------------------------------------

    @property
    def text(self) -> str:
        """Everything returned so far."""
        return "".join(self._emitted)

    def feed(self, chunk: str) -> str:
        """Process one chunk of model output; return the text that can be shown now."""
        for ch in chunk:
            self._char(ch)
        return self._take()

    def flush(self) -> str:
        """End of output: release held text. A dangling partial group like "[1" is dropped."""
        self._resolve_ticks()
        self._release_code()
        if self._delim:
            self._ws = ""  # closing delimiters at the very end
            held, self._delim = self._delim, ""
            self._emit(held)
        if self._bracket is not None:
            held, self._bracket = self._bracket, None
            if not all(c in _GROUP_CHARS for c in held[1:]) or not any(c.isdigit() for c in held):
                self._emit(held)
        self._ws = ""  # trailing spaces carry nothing
        return self._take()

    # -- machinery ---------------------------------------------------------------------------

    def _take(self) -> str:
        out = "".join(self._out)
        self._out.clear()
        if out:
            self._emitted.append(out)
        return out

    def _emit(self, s: str) -> None:
        if self._after_removed and (s[:1] in _CLOSE_PUNCT or s[:1] == "\n"):
            self._ws = ""
        if s:
            self._after_removed = False
        piece = self._ws + s
        self._ws = ""
        if piece:
            self._out.append(piece)
            self._last = piece[-1]

    def _resolve_ticks(self) -> None:
        n, self._ticks = self._ticks, 0
        if not n:
            return
        if self._fence:
            if n >= 3:
                self._fence = False
        elif self._inline:
            if n == self._inline:
                self._inline = 0
                if self._code is not None:
                    self._close_code(n)
                    return
            else:
                self._release_code()
        elif n >= 3:
            self._fence = True
        else:
            self._inline = n
            self._flush_delim(" ")
            self._code = "`" * n  # held: it may be a citation written as code
            return
        self._emit("`" * n)

    def _release_code(self) -> None:
        """The held code span is code after all: show it as it came."""
        if self._code is not None:
            held, self._code = self._code, None
            self._emit(held)

    def _close_code(self, n: int) -> None:
        held, self._code = self._code or "", None
        inner = held[n:]
        found = _CODE_CITATION.fullmatch(inner.strip())
        if found and _numbers(found.group(1)) is not None:
            self._bracket = "[" + found.group(1)
            self._close_bracket()
        else:
            self._emit(held + "`" * n)

    def _flush_delim(self, following: str) -> None:
        """Emit held emphasis/quote characters; they close (and lose the space before) if `following`
        is a space, punctuation or a line end."""
        if not self._delim:
            return
        held, self._delim = self._delim, ""
        if following.isspace() or following in _CLOSE_PUNCT:
            self._ws = ""
        self._emit(held)

    def _abort_bracket(self) -> None:
        held, self._bracket = self._bracket, None
        if held:
            self._emit(held)

    def _char(self, ch: str) -> None:
        if ch == "`":
            if self._bracket is not None:
                self._abort_bracket()
            self._ticks += 1
            return
        if self._ticks:
            self._resolve_ticks()
        if self._code is not None:
            if (ch in _GROUP_CHARS or ch in "[]") and len(self._code) < _MAX_GROUP:
                self._code += ch
                return
            self._release_code()
        if self._fence or self._inline:
            if self._inline and ch == "\n" and self._last == "\n":
                self._inline = 0  # a blank line ends an unclosed inline span
            self._emit(ch)
            return
        if self._delim:
            if ch in _DELIMS:
                self._delim += ch
                return
            self._flush_delim(ch)
        elif ch in _DELIMS and self._after_removed and self._ws and self._bracket is None:
            self._delim = ch
            return
        if self._bracket is not None:
            if ch == "]":
                self._close_bracket()
                return
            if ch in _GROUP_CHARS and len(self._bracket) < _MAX_GROUP:
                self._bracket += ch
                return
            self._abort_bracket()
            # fall through: handle ch normally (it may open a new group)
        if ch == "[":
            self._bracket = "["
        elif ch in " \t":
            if self._after_removed and (self._ws or self._last in ("", "\n")):
                return  # collapse the space left by a removed group
            self._ws += ch
        else:
            self._emit(ch)

    def _close_bracket(self) -> None:
        held, self._bracket = self._bracket or "[", None
        numbers = _numbers(held[1:])
        if numbers is None:
            self._emit(held + "]")
            return
        valid: list[int] = []
        for n in numbers:
            if 1 <= n <= self.n_sources:
                if n not in valid:
                    valid.append(n)
                if n not in self.cited:
                    self.cited.append(n)
            elif n not in self.invalid:
                self.invalid.append(n)
        if valid:
            self._emit("".join(f"[{n}]" for n in valid))
        else:
            self._after_removed = True  # keep self._ws held: dropped if punctuation follows


@dataclass
class CitationResult:
    """A complete answer's text with its citations checked."""

    text: str
    cited: list[int] = field(default_factory=list)
    invalid: list[int] = field(default_factory=list)
    also_retrieved: list[int] = field(default_factory=list)


def also_retrieved(cited: list[int], n_sources: int) -> list[int]:
    """Source numbers given to the model but never cited, in order."""
    used = set(cited)
    return [n for n in range(1, n_sources + 1) if n not in used]


def parse_citations(text: str, n_sources: int) -> CitationResult:
    """Check the citations of a complete text (same rules as the streaming filter)."""
    f = StreamingCitationFilter(n_sources)
    out = f.feed(text) + f.flush()
    return CitationResult(out, list(f.cited), list(f.invalid), also_retrieved(f.cited, n_sources))


def strip_citations(text: str) -> str:
    """Remove citation groups (for earlier answers in the history, whose numbers meant other sources)."""
    return _ANY_GROUP.sub("", text)
