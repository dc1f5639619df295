"""Reading a questions file (JSON Lines, or one JSON array), for `eval` and `eval --answers`.

Both evaluations read the same kind of file with different fields, so the reading, the
one-line errors (naming the first few bad lines, after finding them all) and the shared
`expected` spellings live here once; each evaluation parses its own fields.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from assistant.retrieval.errors import QueryError

EXPECTED_KEYS = ("expected", "expected_sources", "sources", "source")
MAX_SHOWN_ERRORS = 3
T = TypeVar("T")


class EvalInputError(QueryError):
    """The questions file cannot be used as given (the message names the file and line)."""


def read_questions(path: str | Path, parse: Callable[[int, Any], T]) -> list[T]:
    """Every question of the file at `path`, each JSON value turned into one by `parse(line, value)`,
    which raises ValueError with a reason for a bad one.

    Blank lines and lines starting with `#` are skipped. Every bad line is found before failing,
    and the error names the first few by line number.
    """
    text = _read(path)
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as err:
            raise EvalInputError(f"{path} line {err.lineno}: invalid JSON ({err.msg})") from None
        entries: list[tuple[int, Any]] = list(enumerate(items, 1))
        where = "item"
    else:
        entries, where = [], "line"
        errors: list[str] = []
        for n, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            try:
                entries.append((n, json.loads(line)))
            except json.JSONDecodeError as err:
                errors.append(f"line {n}: invalid JSON ({err.msg} at column {err.colno})")
        _raise_if(errors, path)
    questions: list[T] = []
    errors = []
    for n, item in entries:
        try:
            questions.append(parse(n, item))
        except ValueError as err:
            errors.append(f"{where} {n}: {err}")
    _raise_if(errors, path)
    if not questions:
        raise EvalInputError(f"{path}: no questions; write one JSON object a line, e.g."
                             ' {"question": "How do I deploy?", "expected": ["deploy.md"]}')
    return questions


def expected_sources(item: dict[str, Any]) -> list[str] | None:
    """The line's expected sources under any accepted key, a single string as a list (unchecked)."""
    expected = next((item[k] for k in EXPECTED_KEYS if k in item), None)
    return [expected] if isinstance(expected, str) else expected


def _read(path: str | Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise EvalInputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise EvalInputError(f"{path}: is a folder; give a .jsonl file of questions") from None
    except UnicodeDecodeError:
        raise EvalInputError(f"{path}: not UTF-8 text; give a .jsonl file of questions") from None
    except OSError as err:
        raise EvalInputError(f"{path}: cannot read ({err.strerror})") from None


def _raise_if(errors: Sequence[str], path: str | Path) -> None:
    if errors:
        more = f" (and {len(errors) - MAX_SHOWN_ERRORS} more)" if len(errors) > MAX_SHOWN_ERRORS else ""
        raise EvalInputError(f"{path} {'; '.join(errors[:MAX_SHOWN_ERRORS])}{more}")
