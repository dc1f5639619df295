"""`serve` reads HOST, PORT and the login's Chainlit variables through Settings (the environment
over `.env`), checks them before the database opens, and hands the chat server that same merged
environment explicitly, since `.env` is never written into this process's os.environ."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any, ClassVar

import pytest

from assistant.__main__ import main
from assistant.auth import hash_password
from assistant.cli import serve


class _Child:
    """Stands in for the Chainlit process: records how it was started, exits at once."""

    started: ClassVar[list[tuple[list[str], dict[str, Any]]]] = []

    def __init__(self, cmd: list[str], **kwargs: Any) -> None:
        _Child.started.append((cmd, kwargs))

    def wait(self, timeout: float | None = None) -> int:
        return 0

    def terminate(self) -> None:
        pass


@pytest.fixture
def no_chainlit(monkeypatch: pytest.MonkeyPatch) -> list[tuple[list[str], dict[str, Any]]]:
    _Child.started = []
    monkeypatch.setattr(subprocess, "Popen", _Child)
    monkeypatch.setattr(signal, "signal", lambda *args: None)  # no SIGTERM handler left on the test process
    return _Child.started


def _option(cmd: list[str], flag: str) -> str:
    return cmd[cmd.index(flag) + 1]


@pytest.mark.slow
def test_serve_gives_the_chat_the_dotenv_it_read(clean_env, tmp_path: Path, database_url: str, no_chainlit, capsys):
    users = f"alice:{hash_password('a long password')}"
    (tmp_path / ".env").write_text(f"ASSISTANT_USERS={users}\nCHAINLIT_AUTH_SECRET=dotenv-secret\nPORT=9123\n"
                                   "EXTRA_FOR_THE_CHAT=1\n")
    clean_env.setenv("DATABASE_URL", database_url)
    clean_env.setenv("ASSISTANT_SAMPLE_DOCS", "0")
    clean_env.setenv("ASSISTANT_DATA_DIR", str(tmp_path / "data"))
    clean_env.setenv("CHAINLIT_HOST", "127.0.0.2")
    clean_env.delenv("EXTRA_FOR_THE_CHAT", raising=False)
    assert main(["serve", "--headless"]) == 0
    ((cmd, kwargs),) = no_chainlit
    assert str(serve.APP_PATH) in cmd and "--headless" in cmd
    assert (_option(cmd, "--host"), _option(cmd, "--port")) == ("127.0.0.2", "9123")  # CHAINLIT_HOST, .env's PORT
    env = kwargs["env"]
    assert env["CHAINLIT_AUTH_SECRET"] == "dotenv-secret" and env["ASSISTANT_USERS"] == users
    assert env["EXTRA_FOR_THE_CHAT"] == "1" and env["DATABASE_URL"] == database_url
    assert env["PATH"] == os.environ["PATH"]
    assert "CHAINLIT_AUTH_SECRET" not in os.environ and "EXTRA_FOR_THE_CHAT" not in os.environ
    assert "Starting the chat on http://127.0.0.2:9123" in capsys.readouterr().err

    no_chainlit.clear()
    assert main(["serve", "--host", "0.0.0.0", "--port", "8765"]) == 0  # the flags win
    ((cmd, _),) = no_chainlit
    assert (_option(cmd, "--host"), _option(cmd, "--port")) == ("0.0.0.0", "8765") and "--headless" not in cmd


def test_serve_refuses_a_login_without_its_secret_before_opening_the_database(clean_env, tmp_path: Path,
                                                                              no_chainlit, capsys):
    clean_env.setenv("ASSISTANT_USERS", f"alice:{hash_password('a long password')}")
    clean_env.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:9/none")  # never reached
    clean_env.setenv("ASSISTANT_DATA_DIR", str(tmp_path / "data"))
    assert main(["serve"]) == 1
    assert "CHAINLIT_AUTH_SECRET" in capsys.readouterr().err and not no_chainlit
    (tmp_path / ".env").write_text("CHAINLIT_AUTH_SECRET=s\nCHAINLIT_COOKIE_SAMESITE=none\n")
    assert main(["serve"]) == 1
    assert "ALLOWED_ORIGINS" in capsys.readouterr().err and not no_chainlit
    clean_env.setenv("PORT", "http")
    assert main(["serve"]) == 1
    assert capsys.readouterr().err == "error: PORT='http' is not a whole number; set it to e.g. 8000\n"
