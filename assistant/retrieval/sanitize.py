"""Text that PostgreSQL (and the embedders' UTF-8 encoders) can hold.

Two things a hostile or merely broken input can carry break a write or a query outright rather
than just matching nothing: the NUL character (PostgreSQL `text` and `jsonb` refuse U+0000) and
lone UTF-16 surrogates (U+D800-U+DFFF; Python strings hold them, e.g. from JSON `"\\ud800"` or a
file name with undecodable bytes, but they cannot be encoded as UTF-8 at all). Documents and
questions are cleaned with `storable`; values whose exact form matters (filters, file paths) are
checked with `unstorable_reason` and refused with a message instead.
"""

from __future__ import annotations

import re
from typing import Any

_NUL = "\x00"
_SURROGATE = re.compile("[\ud800-\udfff]")


def storable(text: str) -> str:
    """`text` without NUL characters and with lone surrogates replaced by U+FFFD."""
    if _NUL in text:
        text = text.replace(_NUL, "")
    return _SURROGATE.sub("\ufffd", text)


def unstorable_reason(text: str) -> str | None:
    """Why `text` cannot be stored or searched exactly as given, or None when it can."""
    if _NUL in text:
        return "contains a NUL character"
    if _SURROGATE.search(text):
        return "contains invalid Unicode (a lone surrogate)"
    return None


def storable_data(value: Any) -> Any:
    """JSON-like data (dicts, lists, strings) with every string, keys included, made `storable`."""
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, dict):
        return {storable(k) if isinstance(k, str) else k: storable_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable_data(v) for v in value]
    return value
