"""How the command line reports: one line per error (or a JSON object with --json), and library
log records sent to ASSISTANT_DATA_DIR/assistant.log instead of the terminal."""

from __future__ import annotations

import json
import logging
import re
import sys

from assistant.config import Settings

LOG_FILE = "assistant.log"  # under ASSISTANT_DATA_DIR: library warnings of command-line runs


def error_kind(err: BaseException) -> str:
    """`DatabaseError` -> "database", `ModelMismatchError` -> "model_mismatch": for --json errors."""
    name = type(err).__name__.removesuffix("Error") or "error"
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def fail(err: BaseException | str, code: int, as_json: bool, *, kind: str | None = None) -> int:
    """Report an error in one line (stderr), or as `{"error", "kind"}` on stdout with --json; return `code`."""
    message = " ".join(str(err).split())
    if as_json:
        print(json.dumps({"error": message, "kind": kind or error_kind(err)}, ensure_ascii=False))
    else:
        print(message if code == 130 else f"error: {message}", file=sys.stderr)
    return code


_file_log: logging.Handler | None = None


def log_to_file(settings: Settings) -> None:
    """Send log records (libraries' warnings included) to ASSISTANT_DATA_DIR/assistant.log instead of
    the terminal: Python prints records nobody handles on stderr, e.g. pypdf's "incorrect startxref
    pointer" next to our own one-line report of the same file. Best effort: no folder, no file."""
    global _file_log
    root = logging.getLogger()
    if _file_log is not None:  # a second run in one process (tests): one handler, the current folder
        root.removeHandler(_file_log)
        _file_log.close()
        _file_log = None
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.FileHandler(settings.data_dir / LOG_FILE, encoding="utf-8", delay=True)
    except OSError:
        handler = logging.NullHandler()
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    _file_log = handler


