"""Undo what Chainlit's CI mode does to OPENAI_API_KEY.

`chainlit run` has a `--ci` flag that it also takes from the `CI` environment variable, which
CI services, build containers and many shells set (`CI=true`). In CI mode Chainlit overwrites
`OPENAI_API_KEY` with `sk-FAKE-OPENAI-API-KEY` before the app is imported, so a deployment or a
test run with `CI` set sent that fake key to the language model and every answer fell back to
retrieval-only with "rejected the API key (HTTP 401)". (This was the flaky secret-scan test: the
clean-clone runs had `CI` set, and the fake LLM received the fake key, not the configured one.)

On Linux the key the process was started with is still in /proc/self/environ, so it is put back;
elsewhere the fake key is removed (it can never work), and the log says to unset `CI`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, MutableMapping
from pathlib import Path

from assistant.upstream_compat import CHAINLIT_CI_KEY  # what `chainlit run --ci` sets

log = logging.getLogger(__name__)

KEY = "OPENAI_API_KEY"


def initial_environment() -> dict[str, str] | None:
    """The environment this process was started with (Linux /proc), or None where it is unknown."""
    try:
        raw = Path("/proc/self/environ").read_bytes()
    except OSError:
        return None
    pairs = (item.partition(b"=") for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, _, v in pairs}


def restore_openai_key(environ: MutableMapping[str, str] = os.environ,
                       initial: Callable[[], dict[str, str] | None] = initial_environment) -> bool:
    """Put back the OPENAI_API_KEY that Chainlit's CI mode replaced; True when it had to."""
    if environ.get(KEY) != CHAINLIT_CI_KEY:
        return False
    started_with = initial()
    if started_with is not None and started_with.get(KEY) == CHAINLIT_CI_KEY:
        return False  # really configured so (a stand-in in someone's tests): leave it
    original = (started_with or {}).get(KEY)
    if original:
        environ[KEY] = original
        log.warning("Chainlit's CI mode (the CI environment variable is set) replaced OPENAI_API_KEY; "
                    "the configured key was restored")
    elif started_with is not None:  # no key was configured: no language model, as intended
        del environ[KEY]
        log.info("Chainlit's CI mode (the CI environment variable is set) put a fake OPENAI_API_KEY in place;"
                 " it was removed (none is configured)")
    else:
        del environ[KEY]
        log.warning("Chainlit's CI mode (the CI environment variable is set) replaced OPENAI_API_KEY with a fake"
                    " one, and the original cannot be read on this system: unset CI to use your key")
    return True
