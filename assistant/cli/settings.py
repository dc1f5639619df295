"""`config`: every setting as this command line reads it, and where each value came from.

The same reading the chat and the other commands do (the environment over `.env`), so "why does
it use that model?" has an answer without starting anything. Secrets only say whether they are set.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from assistant.config import Settings
from assistant.env import declared, read_dotenv


def _shown(value: Any, secret: bool) -> str:
    if secret:
        return "(set)" if value else "(unset)"
    if value is None:
        return "(unset)"
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, tuple):
        return ",".join(value) or "(unset)"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _source(names: tuple[str, ...], dotenv: dict[str, str]) -> str:
    """Where a setting's value came from: "environment" or ".env" (naming the alias when one was
    used), or "default"."""
    for name in names:
        alias = "" if name == names[0] else f" ({name})"
        if (os.environ.get(name) or "").strip():
            return "environment" + alias
        if (dotenv.get(name) or "").strip():
            return ".env" + alias
    return "default"


def cmd_config(settings: Settings, args: argparse.Namespace) -> int:
    """Print `VARIABLE  value  source` lines, in the README table's order."""
    dotenv = read_dotenv()
    rows = [(var.env, _shown(getattr(settings, f.name), var.secret), _source(var.names, dotenv))
            for f, var, _ in declared(Settings)]
    width = max(len(env) for env, _, _ in rows)
    value_width = min(max(len(value) for _, value, _ in rows), 48)
    for env, value, source in rows:
        print(f"{env:<{width}}  {value:<{value_width}}  {source}")
    return 0
