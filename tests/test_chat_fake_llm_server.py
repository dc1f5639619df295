"""The fake LLM server itself: wire format, scripting over HTTP, and running standalone."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.fakes.llm_server import FakeLLMServer, default_answer, split_tokens

ROOT = Path(__file__).resolve().parents[1]


def test_sse_wire_format_and_recording() -> None:
    with FakeLLMServer() as server:
        server.script(("answer", "Hi [1]."))
        body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "hello"}]}
        with httpx.stream("POST", server.base_url + "/chat/completions", json=body,
                          headers={"Authorization": "Bearer k"}) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            lines = [ln for ln in r.iter_lines() if ln]
        assert lines[-1] == "data: [DONE]"
        chunks = [json.loads(ln.removeprefix("data: ")) for ln in lines[:-1]]
        assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
        assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "Hi [1]."
        assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
        (rec,) = server.chat_requests
        assert rec.model == "m" and rec.stream and rec.headers["authorization"] == "Bearer k"


def test_tokenizer_like_split_and_default_answer() -> None:
    assert split_tokens("Run it [12].") == ["Run", " it", " [", "12", "]", "."]
    prompt = '<source id="1" title="T">\n# Head\nRender gives 512 MB of RAM. More.\n</source>'
    assert default_answer([{"role": "user", "content": prompt}]) == (
        "According to the documentation, render gives 512 MB of RAM [1]."
    )
    assert default_answer([{"role": "user", "content": "no sources"}]) == "The documents do not cover this."


@pytest.mark.slow
def test_standalone_server_is_scriptable_over_http() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "tests.fakes.llm_server", "--port", str(port)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert f"http://127.0.0.1:{port}/v1" in proc.stdout.readline()
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 10
        while True:
            try:
                httpx.get(base + "/v1/models", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert httpx.post(base + "/_fake/script", json={"actions": [["status", 429]]}).json() == {"queued": 1}
        body = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
        r = httpx.post(base + "/v1/chat/completions", json=body)
        assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limit_exceeded"
        r = httpx.post(base + "/v1/chat/completions", json=body)
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"]
        assert len(httpx.get(base + "/_fake/requests").json()) == 2
    finally:
        proc.terminate()
        proc.wait(timeout=5)
