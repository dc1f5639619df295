"""Metadata filters: parsed from `key=value` strings, compiled to parameterised SQL.

Keys are checked against a fixed grammar (never interpolated); values only travel as query
parameters, so quotes, semicolons or `%` in a value are just characters to match.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from psycopg import sql
from psycopg.types.json import Jsonb

from assistant.retrieval.errors import QueryError
from assistant.retrieval.sanitize import unstorable_reason

FILTER_KEYS = ("source", "document_id", "type", "tag", "meta.<key>")
# The `type` metadata the loaders give documents (each format's KIND in loaders/; a test keeps them in step),
# and the other names people use for them. Any other `type=` matches nothing: it is refused instead.
DOCUMENT_TYPES = ("md", "txt", "html", "pdf")
_TYPE_ALIASES = {"markdown": "md", "text": "txt", "htm": "html"}
_META_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
_SHORTCUTS = {"type": "type", "tag": "tags", "tags": "tags", "lang": "lang"}
_DOCUMENT_ID = re.compile(r"[0-9]{1,18}")  # ASCII digits only, and within PostgreSQL's bigint


@dataclass(frozen=True)
class Filters:
    """Restrictions on which documents a search may return (all must hold)."""

    source_prefix: str | None = None
    document_ids: tuple[int, ...] = ()
    metadata: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def __bool__(self) -> bool:
        return bool(self.source_prefix or self.document_ids or self.metadata)

    def describe(self) -> str:
        parts = []
        if self.source_prefix:
            parts.append(f"source={self.source_prefix}")
        if self.document_ids:
            parts.append("document_id=" + ",".join(map(str, self.document_ids)))
        parts += [f"meta.{k}={v}" for k, v in self.metadata]
        return " ".join(parts)


def _unknown(key: str) -> QueryError:
    return QueryError(f"Unknown filter key {key[:80]!r}; use one of: {', '.join(FILTER_KEYS)}")


def document_type(value: str) -> str:
    """The document type a `type=` filter names (`PDF`, `.md` and `markdown` are understood)."""
    kind = value.strip().lower().removeprefix(".")
    kind = _TYPE_ALIASES.get(kind, kind)
    if kind not in DOCUMENT_TYPES:
        raise QueryError(f"Unknown document type {value[:40]!r}; type= takes one of: {', '.join(DOCUMENT_TYPES)}")
    return kind


def parse_filters(items: Iterable[str] | Mapping[str, Any] | Filters | None) -> Filters:
    """Build Filters from `["key=value", ...]` (CLI) or a mapping (chat settings)."""
    if items is None:
        return Filters()
    if isinstance(items, Filters):
        return items
    pairs: list[tuple[str, str]] = []
    if isinstance(items, Mapping):
        pairs = [(str(k), "" if v is None else str(v)) for k, v in items.items()]
    else:
        for item in items:
            key, sep, value = item.partition("=")
            if not sep:
                raise QueryError(
                    f"Filter {item[:80]!r} is not key=value (e.g. --filter source=docs/ or --filter tag=faq)")
            pairs.append((key, value))
    source: str | None = None
    ids: list[int] = []
    meta: list[tuple[str, str]] = []
    for raw_key, raw_value in pairs:
        key, value = raw_key.strip(), raw_value.strip()
        reason = unstorable_reason(key + value)
        if reason:
            raise QueryError(f"The filter {key[:80]!r} {reason}; remove it and try again")
        if not value:
            if key in ("source", "document_id", *_SHORTCUTS) or key.startswith("meta."):
                continue  # an empty field in the chat settings means "no filter"
            raise _unknown(key)
        if key == "source":
            source = value
        elif key in ("document_id", "doc", "id"):
            for part in value.split(","):
                if not _DOCUMENT_ID.fullmatch(part.strip()):
                    raise QueryError(f"document_id must be whole numbers separated by commas, not {value[:80]!r}")
                ids.append(int(part))
        elif key == "type":
            meta.append(("type", document_type(value)))
        elif key in _SHORTCUTS:
            meta.append((_SHORTCUTS[key], value))
        elif key.startswith("meta."):
            name = key[5:]
            if not _META_KEY.match(name):
                raise QueryError(f"Metadata key {name[:80]!r} may only use letters, digits, '_', '.', '-'")
            meta.append((name, value))
        else:
            raise _unknown(key)
    return Filters(source_prefix=source, document_ids=tuple(ids), metadata=tuple(meta))


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def compile_filters(filters: Filters, doc_alias: str = "d") -> tuple[sql.Composable, dict[str, Any]]:
    """SQL conditions (joined by AND, `TRUE` when empty) with named placeholders `%(f0)s`.. and
    their parameters, so they combine with a query's own named parameters."""
    d = sql.Identifier(doc_alias)
    conds: list[sql.Composable] = []
    params: dict[str, Any] = {}

    def param(value: Any) -> sql.Placeholder:
        name = f"f{len(params)}"
        params[name] = value
        return sql.Placeholder(name)

    if filters.source_prefix:
        prefix = _like_prefix(filters.source_prefix)
        conds.append(sql.SQL("({d}.source LIKE {p} ESCAPE '\\' OR {d}.url LIKE {p} ESCAPE '\\')").format(
            d=d, p=param(prefix)))
    if filters.document_ids:
        conds.append(sql.SQL("{}.id = ANY({})").format(d, param(list(filters.document_ids))))
    for key, value in filters.metadata:
        # a scalar value, or a list containing it (tags: [a, b])
        conds.append(sql.SQL("({d}.metadata @> {a} OR {d}.metadata @> {b})").format(
            d=d, a=param(Jsonb({key: value})), b=param(Jsonb({key: [value]}))))
    if not conds:
        return sql.SQL("TRUE"), {}
    return sql.SQL(" AND ").join(conds), params
