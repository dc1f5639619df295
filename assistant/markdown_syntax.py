"""Markdown syntax shared by the loaders (which write Markdown into chunks) and the chat (which reads
it back out of them): one definition, so both sides agree on what a code fence is.

Standard library only, at the foundation: the loaders, the chat and the UI all import it.
"""

from __future__ import annotations

import re

# An opening or closing code fence line (CommonMark: up to 3 spaces, then 3+ backticks or tildes,
# then the info string). `marker` is the fence itself, `info` what follows it; the indent is
# `match.start("marker")`.
FENCE_LINE = re.compile(r"^ {0,3}(?P<marker>`{3,}|~{3,})(?P<info>.*)$")
_BACKTICK_RUN = re.compile(r"`+")


def backtick_fence(code: str) -> str:
    """The shortest backtick fence (3 or more) longer than any backtick run in `code`, so it cannot close early."""
    longest = max((len(m) for m in _BACKTICK_RUN.findall(code)), default=0)
    return "`" * max(3, longest + 1)


def fence_code(code: str, info: str = "") -> str:
    """Wrap code in a backtick fence longer than any backtick run inside it."""
    fence = backtick_fence(code)
    return f"{fence}{info}\n{code}\n{fence}"
