"""`chainlit run assistant/app.py` as a real server in a subprocess, for browser and access tests.

Each server gets its own app root (Chainlit deletes `<root>/.files` when it shuts down) and its
own log file (stdout and stderr together), which tests may read: e.g. to check that no secret
from the environment was ever printed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from assistant.config import Settings
from tests.conftest import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppServer:
    """`chainlit run assistant/app.py` in a subprocess, ready once /healthz says 200."""

    def __init__(self, name: str, env: dict[str, str], work_dir: Path) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = work_dir / f"{name}.log"
        # Chainlit deletes <app root>/.files when it shuts down; give each server its own app root
        # holding links to the repository's .chainlit/ and public/ and copies of chainlit*.md.
        root = work_dir / f"{name}-root"
        root.mkdir()
        for item in (".chainlit", "public"):
            (root / item).symlink_to(ROOT / item)
        for readme in ROOT.glob("chainlit*.md"):  # copies: Chainlit ignores a translation outside the root
            shutil.copyfile(readme, root / readme.name)
        base = {k: v for k, v in os.environ.items() if k not in Settings.ENV.values() and k != "HF_TOKEN"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "chainlit", "run", str(ROOT / "assistant" / "app.py"), "--headless",
             "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=root, env={**base, "CHAINLIT_APP_ROOT": str(root), "PYTHONPATH": str(ROOT), **env},  # the checkout
            stdout=self.log.open("wb"), stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 150.0) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            with contextlib.suppress(httpx.HTTPError):
                response = httpx.get(self.url + "/healthz", timeout=5)
                last = response.text
                if response.status_code == 200:
                    return
            time.sleep(0.3)
        tail = self.log.read_text(errors="replace")[-3000:]
        self.stop()
        raise RuntimeError(f"{self.name} server not ready (last /healthz: {last!r}); log tail:\n{tail}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@contextlib.contextmanager
def extractive_and_llm_servers(prefix: str, common: dict[str, str], llm_base_url: str, model: str,
                               logs: Path) -> Iterator[dict[str, AppServer]]:
    """Two app servers started together, retrieval-only and with the scripted LLM (start-up dominates)."""
    llm_env = {"OPENAI_API_KEY": "test", "OPENAI_BASE_URL": llm_base_url, "LLM_MODEL": model,
               "LLM_TIMEOUT": "10", "LLM_MAX_RETRIES": "0"}
    started = {
        "extractive": AppServer(f"{prefix}extractive", common, logs),
        "llm": AppServer(f"{prefix}llm", {**common, **llm_env}, logs),
    }
    try:
        for server in started.values():
            server.wait_ready()
        yield started
    finally:
        for server in started.values():
            server.stop()
