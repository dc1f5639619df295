"""`hash-password`: make an ASSISTANT_USERS entry (needs no configuration, so it runs before any is read)."""

from __future__ import annotations

import argparse
import sys

from assistant.errors import QueryError


def cmd_hash_password(args: argparse.Namespace) -> int:
    """Print `NAME:HASH` for ASSISTANT_USERS; the password is typed twice, or read from a pipe."""
    import getpass

    from assistant.auth import NAME, hash_password

    if not NAME.match(args.user):
        raise QueryError(f"{args.user!r} cannot be a login name: use 1-64 characters without spaces, ':' or ','")
    if sys.stdin.isatty():
        password = getpass.getpass(f"Password for {args.user}: ")
        if getpass.getpass("Again: ") != password:
            raise QueryError("The two passwords differ; nothing was printed")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    try:
        encoded = hash_password(password)
    except ValueError as err:
        raise QueryError(f"Cannot use that password: {err}") from None
    print(f"{args.user}:{encoded}")
    print("Add this line to ASSISTANT_USERS (entries separated by commas).", file=sys.stderr)
    return 0


