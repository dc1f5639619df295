"""Bytes to text for the text formats: BOMs, UTF-8, a declared charset, cp1252; binary refused."""

from __future__ import annotations

import codecs
import unicodedata
from pathlib import Path
from typing import Any

from assistant.retrieval.errors import IngestError

_BINARY_CONTROL_RATIO = 0.10  # real text has ~0% control characters; random bytes ~13-25%


def decode(path: Path | str, raw: bytes, fallback_codec: str | None = None) -> tuple[str, str | None]:
    """Bytes to text: BOMs first, then UTF-8, then `fallback_codec`, then cp1252/latin-1.

    Returns (text, encoding) where encoding is None for plain UTF-8. Never fails on the
    encoding; raises IngestError when the bytes look binary.
    """
    encoding: str | None = None
    if raw.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        text, encoding = _decode_bom(path, raw, "utf-32")
    elif raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        text, encoding = _decode_bom(path, raw, "utf-16")
    else:
        if b"\x00" in raw:
            raise IngestError(f"{path}: binary file (contains NUL bytes), not text")
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            text = ""
            for codec in (fallback_codec, "cp1252", "latin-1"):
                if not codec:
                    continue
                try:
                    text = raw.decode(codec)
                except (UnicodeDecodeError, LookupError):
                    continue
                encoding = codec if codec in ("cp1252", "latin-1") else codecs.lookup(codec).name
                break
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if _looks_binary(text):
        raise IngestError(f"{path}: binary file (mostly non-printable characters), not text")
    return text, encoding


def _decode_bom(path: Path | str, raw: bytes, codec: str) -> tuple[str, str]:
    try:
        return raw.decode(codec), codec
    except UnicodeDecodeError:
        raise IngestError(f"{path}: invalid {codec.upper()} text (has a BOM but bad bytes)") from None


def _looks_binary(text: str) -> bool:
    sample = text[:65536]
    if not sample:
        return False
    bad = sum(
        1
        for ch in sample
        if (ch not in "\t\n\f\v" and unicodedata.category(ch) in ("Cc", "Cs", "Co", "Cn")) or ch == "\ufffd"
    )
    return bad / len(sample) > _BINARY_CONTROL_RATIO


def with_encoding(encoding: str | None) -> dict[str, Any]:
    """The metadata that records a non-UTF-8 encoding (nothing for UTF-8)."""
    return {"encoding": encoding} if encoding else {}
