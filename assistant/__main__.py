"""Command line: `python -m assistant ingest|search|eval|db|serve|hash-password|config`.

`search` is the retrieval-only debug mode: it imports nothing from the chat stack, so it starts
fast and small, and prints how each hit was found (vector rank and similarity, text rank, fused
score) with the time spent embedding and searching. User errors print one line and exit 1
(2 for bad usage); tracebacks are for bugs only. With `--json`, an error is a JSON object on
stdout instead, `{"error": "...", "kind": "database"}`, with the same exit code, so a script
always gets JSON. Libraries' own log lines (pypdf's complaints about a damaged PDF, say) go to
ASSISTANT_DATA_DIR/assistant.log, not to the terminal, where each problem gets one line of ours.
Each command lives in its own module under `assistant/cli/`, imported when it runs.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from assistant.cli.parser import MAX_HITS, UsageError, build_parser
from assistant.cli.report import error_kind, fail, log_to_file
from assistant.config import Settings
from assistant.errors import AssistantError, QueryError

__all__ = ["MAX_HITS", "error_kind", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    as_json = "--json" in argv
    try:
        args = build_parser().parse_args(argv)
    except UsageError as err:
        if as_json:
            return fail(f"{err.parser.prog}: {err}", 2, True, kind="usage")
        err.parser.print_usage(sys.stderr)  # what argparse itself prints
        print(f"{err.parser.prog}: error: {err}", file=sys.stderr)
        return 2
    # The connection pool warns (in two lines) at every reconnect attempt; the command line reports
    # a lost database once, in its own words (the chat server keeps those warnings in its log).
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
    as_json = bool(getattr(args, "json", False))
    try:
        if args.command == "hash-password":  # needs no (and must not fail on a broken) configuration
            from assistant.cli.users import cmd_hash_password

            return cmd_hash_password(args)
        if args.command == "config" and args.markdown:  # the declarations only, not the environment
            from assistant.config import markdown_table

            print(markdown_table())
            return 0
        settings = Settings.from_env()
        log_to_file(settings)
        return _run(args.command, settings, args)
    except QueryError as err:
        return fail(err, 2, as_json)
    except AssistantError as err:
        return fail(err, 1, as_json)
    except KeyboardInterrupt:
        return fail("interrupted", 130, as_json, kind="interrupted")


def _run(command: str, settings: Settings, args: argparse.Namespace) -> int:
    """The command's handler, imported now: each command loads only what it uses."""
    if command == "ingest":
        from assistant.cli.ingest import cmd_ingest as handler
    elif command == "search":
        from assistant.cli.search import cmd_search as handler
    elif command == "eval":
        from assistant.cli.search import cmd_eval as handler
    elif command == "db":
        from assistant.cli.db import cmd_db as handler
    elif command == "config":
        from assistant.cli.settings import cmd_config as handler
    else:
        from assistant.cli.serve import cmd_serve as handler
    return handler(settings, args)


if __name__ == "__main__":
    sys.exit(main())
