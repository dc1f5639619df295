"""render.yaml: a Blueprint Render accepts, wired to the names the app actually reads."""

from __future__ import annotations

from pathlib import Path

import yaml

from assistant.config import Settings

ROOT = Path(__file__).resolve().parents[1]
BLUEPRINT = yaml.safe_load((ROOT / "render.yaml").read_text())


def test_web_service_on_the_free_plan():
    (web,) = BLUEPRINT["services"]
    assert web["type"] == "web" and web["runtime"] == "python" and web["plan"] == "free"
    assert "requirements.txt" in web["buildCommand"]
    start = web["startCommand"]
    # `python -m`: the build does not install the project, so the checkout must be on the import path
    assert start.startswith("python -m chainlit run assistant/app.py") and "--host 0.0.0.0" in start
    assert "$PORT" in start
    assert web["healthCheckPath"] == "/healthz"


def test_env_vars_are_known_and_secrets_not_committed():
    (web,) = BLUEPRINT["services"]
    env = {v["key"]: v for v in web["envVars"]}
    known = set(Settings.ENV.values()) | {"PYTHON_VERSION", "CHAINLIT_AUTH_SECRET", "TIKTOKEN_CACHE_DIR"}
    assert set(env) <= known, set(env) - known
    for secret in ("OPENAI_API_KEY", "HUGGINGFACE_TOKEN"):
        assert env[secret] == {"key": secret, "sync": False}
    assert env["DATABASE_URL"]["fromDatabase"] == {"name": "doc-assistant-db", "property": "connectionString"}
    assert env["CHAINLIT_AUTH_SECRET"]["generateValue"] is True


def test_database_is_declared():
    (db,) = BLUEPRINT["databases"]
    assert db["name"] == "doc-assistant-db" and db["plan"] == "free" and db["postgresMajorVersion"] == "16"
