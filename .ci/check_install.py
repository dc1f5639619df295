"""Check an installed doc-assistant from outside the checkout (run by .ci/run after `pip install .`).

Usage: python .ci/check_install.py VENV WORKDIR

Everything the product runs here is VENV's: its `doc-assistant` script and its interpreter,
started in WORKDIR (outside the repository) with no PYTHONPATH and none of the product's settings,
so the package, its data and the files Chainlit reads can only come from the installed wheel.
Checks, each failing with one line that says what is missing:
1. `doc-assistant --help` works (the console script);
2. `assistant` imports from VENV, and every data file the checkout has (the package's: sample
   corpus, vectors; the app root's: prompts/, public/, .chainlit/config.toml, chainlit*.md) is
   where the code looks for it, inside the installed package (the latter in assistant/app_files/),
   with nothing at site-packages' top level;
3. `doc-assistant search ... --json` on built-in defaults (embedded PostgreSQL in WORKDIR, the
   sample corpus indexed from its shipped vectors, local embeddings) finds the sample guide;
4. `doc-assistant serve --headless` answers /healthz with everything "ok" and serves public/.
Stdlib only: this script runs with the checkout's Python, not VENV's.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

# Run by VENV's interpreter with argv[1:] = the checkout's data files (relative paths).
IMPORT_CHECK = """
import sys
from pathlib import Path
import assistant
from assistant.app_files import BUNDLED, source_root
from assistant.chat import load_prompts

package = Path(assistant.__file__).resolve().parent
assert Path(sys.prefix).resolve() in package.parents, f"assistant imported from {package}, not the venv"
assert source_root() == BUNDLED, f"the app files are looked up in {source_root()}, not the wheel's {BUNDLED}"
def place(name):  # the package's own files in it; the app root's files in its app_files/ copy
    return package.parent / name if name.startswith("assistant/") else BUNDLED / name
missing = [name for name in sys.argv[1:] if not place(name).is_file()]
assert not missing, f"the installed package lacks {len(missing)} data files: {missing[:10]}"
stray = [n for n in ("prompts", "public", ".chainlit", "chainlit.md") if (package.parent / n).exists()]
assert not stray, f"the wheel put {stray} at the top level of {package.parent}"
load_prompts()
print(f"assistant {package}: {len(sys.argv) - 1} data files in place, none outside the package")
"""
# What the wheel must carry besides modules: the package's data and the app root's files.
DATA_FILES = ("assistant", "prompts", "public", ".chainlit/config.toml", "chainlit.md", "chainlit_en-US.md")


def data_files(repo: Path) -> list[str]:
    listed = subprocess.run(["git", "ls-files", "--", *DATA_FILES], cwd=repo, capture_output=True, text=True,
                            check=True).stdout.split("\n")
    return [name for name in listed if name and not name.endswith(".py")]


def fail(message: str) -> None:
    print(f"check_install: {message}", file=sys.stderr)
    sys.exit(1)


def run(cmd: list[str], env: dict[str, str], cwd: Path, timeout: float) -> str:
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        fail(f"{' '.join(cmd[:3])} exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return done.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")


def check_serve(script: Path, env: dict[str, str], work: Path) -> None:
    port = free_port()
    log = (work / "serve.log").open("w")
    proc = subprocess.Popen([str(script), "serve", "--headless", "--port", str(port)], env=env, cwd=work,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline, health = time.monotonic() + 240, {}
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                fail(f"serve exited {proc.returncode}:\n{(work / 'serve.log').read_text()[-3000:]}")
            try:
                status, body = get(f"{base}/healthz")
                health = json.loads(body)
                if status == 200 and health.get("status") == "ok":
                    break
            except (OSError, ValueError):
                pass
            time.sleep(1)
        else:
            fail(f"serve: /healthz not ok within 240 s (last {health}):\n{(work / 'serve.log').read_text()[-3000:]}")
        bad = {k: v for k, v in health.items() if k != "documents" and v != "ok"}
        if bad or not health.get("documents"):
            fail(f"serve: /healthz {health}")
        status, script_js = get(f"{base}/public/doc-assistant.js")
        if status != 200 or not script_js.strip():
            fail(f"serve: /public/doc-assistant.js answered {status}")
        print(f"serve: /healthz {health}; public/ served")
    finally:
        proc.send_signal(signal.SIGTERM)  # serve stops the chat and the embedded server
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def main() -> None:
    venv, work = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
    repo = Path(__file__).resolve().parents[1]
    if work == repo or repo in work.parents:
        fail(f"WORKDIR {work} is inside the checkout")
    script, python = venv / "bin" / "doc-assistant", venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "DATABASE_URL", "OPENAI_API_KEY", "OPENAI_BASE_URL", "LLM_MODEL",
                        "EMBEDDING_PROVIDER", "HUGGINGFACE_TOKEN", "HF_TOKEN") and not k.startswith("ASSISTANT_")}
    env["ASSISTANT_DATA_DIR"] = str(work / "data")

    if "usage:" not in run([str(script), "--help"], env, work, 60):
        fail("doc-assistant --help printed no usage")
    print("doc-assistant --help: ok")
    print(run([str(python), "-c", IMPORT_CHECK, *data_files(repo)], env, work, 120).strip())
    found = json.loads(run([str(script), "search", "How do I deploy on Render?", "--json"], env, work, 300))
    sources = [hit.get("source", "") for hit in found.get("hits", [])]
    if not any("deploy-render" in s for s in sources):
        fail(f"search did not find the sample guide's deploy page: {sources}")
    print(f"search: {len(sources)} hits, first {sources[0]}")
    check_serve(script, env, work)


if __name__ == "__main__":
    main()
