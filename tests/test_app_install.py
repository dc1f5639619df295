"""`assistant.app`: importing it does nothing; `install()` is the one call that wires the server.

And the data layer's way to the database: the shared connection pool, which opens before (and
without) the embedding model, so a user's chat history loads while search is still starting.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from chainlit.config import config as cl_config
from chainlit.server import app as server_app
from chainlit.types import Pagination, ThreadFilter

import assistant.retrieval
from assistant.retrieval.errors import DatabaseError
from assistant.ui.datalayer import ChatDataLayer
from assistant.ui.runtime import Runtime
from tests.conftest import ROOT, make_settings
from tests.fakes.installed_app import install_for_tests


def run_python(script: str, cwd: Path, pythonpath: str | None) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "ASSISTANT_DATA_DIR": "/nonexistent-never-opened"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return subprocess.run([sys.executable, "-c", script], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.slow
def test_importing_the_app_changes_nothing() -> None:
    script = ("import json, sys\n"
              "import assistant.app\n"
              "from chainlit.config import config\n"
              "print(json.dumps({'server': 'chainlit.server' in sys.modules,\n"
              "                  'handlers': [n for n in ('on_message', 'on_chat_start', 'data_layer')\n"
              "                               if getattr(config.code, n, None)]}))\n")
    out = run_python(script, ROOT, str(ROOT))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"server": False, "handlers": []}


@pytest.mark.slow
def test_chainlit_loading_the_file_by_path_installs_it_or_says_what_to_do(tmp_path: Path) -> None:
    """`chainlit run assistant/app.py` loads the file by path: it wires itself. When the package is
    not importable (the `chainlit` script in a checkout), one line says how to start it instead."""
    script = ("from chainlit.config import config, load_module\n"
              f"load_module({str(ROOT / 'assistant' / 'app.py')!r})\n"
              "print(bool(config.code.on_message), bool(config.code.data_layer))\n")
    for cwd, pythonpath in ((tmp_path, str(ROOT)), (ROOT, None)):  # PYTHONPATH; or Render's `python -m` from the root
        wired = run_python(script, cwd, pythonpath)
        assert wired.returncode == 0, wired.stderr
        assert wired.stdout.split()[-2:] == ["True", "True"]
    lost = run_python(script, tmp_path, None)
    assert lost.returncode == 1 and "Traceback" not in lost.stderr
    assert lost.stderr.strip().splitlines()[-1].startswith("Cannot import the `assistant` package: run `pip install .`")


def test_install_registers_the_handlers_on_the_settings_it_is_given() -> None:
    settings = make_settings(allowed_origins=("https://docs.example.org",))
    try:
        chat = install_for_tests(settings)
        assert chat.runtime.settings is settings
        assert cl_config.code.on_message is not None and cl_config.code.on_chat_end is not None
        assert cl_config.code.data_layer is not None and isinstance(cl_config.code.data_layer(), ChatDataLayer)
        assert cl_config.project.allow_origins == ["https://docs.example.org"]
        assert [getattr(r, "path", None) for r in server_app.router.routes].count("/healthz") == 1
        install_for_tests(settings)  # again: replaced, not stacked
        assert [getattr(r, "path", None) for r in server_app.router.routes].count("/healthz") == 1
    finally:
        install_for_tests()  # back to an empty environment's settings for the next tests


@pytest.mark.slow  # builds the real embedder once released
async def test_chat_history_loads_before_the_embedder_is_built(database_url: str, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The data layer reaches the database through the runtime's pool, which opens on its own; the
    retriever (embedding model, sample corpus) may still be loading, or have failed."""
    gate, building = threading.Event(), threading.Event()
    real = assistant.retrieval.retriever_on

    def slow_embedder(*args: object, **kw: object) -> object:
        building.set()
        if not gate.wait(30):
            raise DatabaseError("never released")
        return real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(assistant.retrieval, "retriever_on", slow_embedder)
    runtime = Runtime(make_settings(database_url=database_url, data_dir=tmp_path))
    warm = runtime.start_warmup()
    try:
        assert building.wait(30)  # the warm-up is building the embedder...
        layer = ChatDataLayer(runtime.database)
        await layer.update_thread("t1", name="Render question")  # ...and history is written and read
        page = await layer.list_threads(Pagination(first=5), ThreadFilter())
        assert [t["name"] for t in page.data] == ["Render question"]
        assert not runtime.searchable
    finally:
        gate.set()
        warm.join(60)
        runtime.close()
