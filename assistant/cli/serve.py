"""`serve`: prepare the database here, then run the chat (Chainlit) as a child process."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

from assistant.app_files import chainlit_root
from assistant.config import Settings
from assistant.env import environment

APP_PATH = Path(__file__).resolve().parents[1] / "app.py"


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    """Prepare the database (and sample corpus) in this terminal, then hand over to Chainlit."""
    from assistant.auth import check_login_settings
    from assistant.retrieval import open_retriever

    check_login_settings(settings.users, settings.allowed_origins, settings.chainlit_auth_secret,
                         settings.chainlit_cookie_samesite)  # before the database, not after
    args.host, args.port = args.host or settings.host, args.port or settings.port  # the flags, else HOST, PORT
    retriever = open_retriever(settings)
    print(f"Database ready ({retriever.store.document_count()} documents). Starting the chat on"
          f" http://{args.host}:{args.port}", file=sys.stderr)
    retriever.store.close()
    cmd = [sys.executable, "-m", "chainlit", "run", str(APP_PATH), "--host", args.host, "--port", str(args.port)]
    if args.headless:
        cmd.append("--headless")
    # A child process, not exec: this one keeps the embedded server's handle until the chat exits.
    # Chainlit reads .chainlit/, chainlit.md and public/ from its working directory: the repository
    # root, or for an installed package a folder in the data directory linking to the wheel's copy.
    # The chat reads its settings (and Chainlit its CHAINLIT_* variables) from its environment: it gets
    # this one with this directory's .env layered under it, which is never written into os.environ;
    # with PYTHONPATH led by this package's folder, it imports the same `assistant` as this process.
    env = environment()
    package_root = str(APP_PATH.parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    child = subprocess.Popen(cmd, cwd=chainlit_root(settings.data_dir), env=env)
    signal.signal(signal.SIGTERM, lambda *_: child.terminate())  # a stopped `serve` stops the chat too
    try:
        return child.wait()
    except KeyboardInterrupt:  # Ctrl-C reached the child as well: let it finish shutting down
        try:
            return child.wait(timeout=10)
        except (KeyboardInterrupt, subprocess.TimeoutExpired):
            child.kill()
            return 130


