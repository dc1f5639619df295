"""How a setting is declared and read: `setting(...)` fields, their rules, and `.env` layering.

`assistant.config` declares each setting once as a dataclass field made by `setting()`; this
module holds what is derived from those declarations for any such dataclass: reading and
validating the fields from an environment (`read_fields`), the README table (`markdown_rows`),
and the environment itself, `.env` layered under the real one without writing `os.environ`.
Stdlib only.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from pathlib import Path
from typing import Any

from assistant.errors import ConfigError

DOTENV = Path(".env")  # in the working directory
# A limit, or a function of the fields read before (its docstring names it in the README table).
Bound = float | Callable[[Mapping[str, Any]], float]


def read_dotenv(path: Path = DOTENV) -> dict[str, str]:
    """KEY=VALUE lines of a `.env` file (`export`, quotes and comments allowed); {} when unreadable."""
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, IsADirectoryError, PermissionError, UnicodeDecodeError):
        return {}
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        key, value = key.strip(), value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values.setdefault(key, value)
    return values


def environment(*, dotenv: bool = True, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The real environment over `.env`'s values (the real one wins), as a new dict: what the
    settings are read from, and what a child process started by `serve` must be given."""
    real = os.environ if environ is None else environ
    return {**(read_dotenv() if dotenv else {}), **real}


@dataclass(frozen=True)
class Var:
    """How one setting is read: its variable, the rules its value must meet, and its help text."""

    env: str
    help: str  # the README table's "What it does"
    aliases: tuple[str, ...] = ()  # also accepted, after `env`
    kind: type = str  # str, int, float or bool
    low: Bound | None = None
    high: Bound | None = None
    choices: tuple[str, ...] = ()
    lower: bool = False  # compared and stored in lower case
    example: Any = None  # for messages when there is no default
    shown: str | None = None  # the README's "Default" cell when the default itself says too little
    parse: Callable[[Var, str | None, Any, Mapping[str, Any]], Any] | None = None  # special rules
    secret: bool = False  # never in repr() or `config` output

    @property
    def names(self) -> tuple[str, ...]:
        return (self.env, *self.aliases)

    def convert(self, raw: str | None, default: Any, values: Mapping[str, Any]) -> Any:
        """The typed value of `raw` (None: unset), checked against type, range and choices."""
        if raw is None:
            return default
        hint = f"default {default}" if default is not None else f"e.g. {self.example}"
        if self.kind is bool:
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ConfigError(f"{self.env}={raw!r} is not a boolean; use 1 or 0")
        if self.kind in (int, float):
            try:
                value = self.kind(raw)
            except ValueError:
                what = "a whole number" if self.kind is int else "a number"
                raise ConfigError(f"{self.env}={raw!r} is not {what}; set it to e.g. {hint.split()[-1]}") from None
            low, high = (b(values) if callable(b) else b for b in (self.low, self.high))
            if not (low is None or low <= value) or not (high is None or value <= high):
                raise ConfigError(f"{self.env}={value} is out of range; use {low}..{high} ({hint})")
            return value
        value = raw.lower() if self.lower else raw
        if self.choices and value not in self.choices:
            raise ConfigError(f"{self.env}={value!r} is not known; use one of {', '.join(self.choices)}")
        return value

    def default_cell(self, default: Any) -> str:
        """The README's "Default" cell: the default, and the allowed range or choices."""
        if self.shown is not None:
            cell = self.shown
        elif default is None or default == ():
            cell = "—"
        elif isinstance(default, bool):
            cell = f"`{int(default)}`"
        elif isinstance(default, tuple):
            cell = f"`{','.join(default)}`"
        else:
            cell = f"`{_number(default) if isinstance(default, float) else default}`"
        if self.low is not None and self.high is not None:
            cell += f" ({'-'.join(b.__doc__ or '?' if callable(b) else _number(b) for b in (self.low, self.high))})"
        return cell


def _number(value: float) -> str:
    """1000000 -> "1,000,000", 0.1 -> "0.1", 60.0 -> "60"."""
    return f"{int(value):,}" if float(value).is_integer() else f"{value:g}"


def setting(env: str, default: Any = MISSING, *, factory: Callable[[], Any] | None = None, **rules: Any) -> Any:
    """A Settings field read from `env` (see `Var` for the rules)."""
    var = Var(env, **rules)
    if factory is not None:
        return field(default_factory=factory, repr=not var.secret, metadata={"var": var})
    return field(default=default, repr=not var.secret, metadata={"var": var})


def _lookup(env: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    """The first of `names` set to something other than blanks (stripped), else None."""
    for name in names:
        value = env.get(name)
        if value is not None and value.strip() != "":
            return value.strip()
    return None


def declared(cls: type) -> Iterator[tuple[Field[Any], Var, Any]]:
    """(field, its Var, its default) for each field of a dataclass made with `setting()`."""
    for f in fields(cls):
        default = f.default_factory() if f.default is MISSING else f.default  # type: ignore[misc]
        yield f, f.metadata["var"], default


def read_fields(cls: type, env: Mapping[str, str]) -> dict[str, Any]:
    """Each field's value from `env`, in declaration order (a rule may look at fields read before)."""
    values: dict[str, Any] = {}
    for f, var, default in declared(cls):
        raw = _lookup(env, var.names)
        values[f.name] = var.parse(var, raw, default, values) if var.parse else var.convert(raw, default, values)
    return values


def markdown_rows(documented: Iterator[tuple[Var, Any]]) -> list[str]:
    """`| VARIABLE | default (range) | help |` rows; aliases are named at the end of the help."""
    rows = []
    for var, default in documented:
        also = f" Also read from {', '.join(f'`{a}`' for a in var.aliases)}." if var.aliases else ""
        rows.append(f"| `{var.env}` | {var.default_cell(default)} | {var.help}{also} |")
    return rows
