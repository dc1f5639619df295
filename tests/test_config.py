"""Settings: defaults, validation with one-line errors naming the variable, aliases, `.env` layering,
the README table generated from the declarations, and `python -m assistant config`."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from assistant.__main__ import main as cli_main
from assistant.config import Settings, env_names, markdown_table, settings_fields
from assistant.env import Var, declared, environment
from assistant.retrieval.errors import ConfigError

README = Path(__file__).resolve().parents[1] / "README.md"


def test_defaults_need_no_configuration(clean_env):
    s = Settings.from_env()
    assert s.database_url is None and s.embedding_provider == "local" and not s.llm_enabled
    assert s.embedding_model == "intfloat/multilingual-e5-small" and s.embedding_dim == 384
    assert s.sample_docs and s.text_search_config == "simple"


def test_every_setting_has_an_env_var_documented_in_the_readme():
    assert set(Settings.ENV) == set(settings_fields())
    table = {m.group(1) for m in re.finditer(r"^\| `([A-Z0-9_]+)` \|", README.read_text(), re.M)}
    assert set(Settings.ENV.values()) <= table, set(Settings.ENV.values()) - table


def test_hf_token_alias_and_dotenv(clean_env, tmp_path):
    (tmp_path / ".env").write_text("# comment\nexport HF_TOKEN='hf_abc'\nTOP_K=7\nEMPTY=\n")
    clean_env.setenv("TOP_K", "3")  # the real environment wins over .env
    s = Settings.from_env()
    assert s.hf_token == "hf_abc" and s.top_k == 3


@pytest.mark.parametrize(("name", "value", "needle"), [
    ("EMBEDDING_PROVIDER", "torch", "EMBEDDING_PROVIDER"),
    ("TOP_K", "many", "TOP_K"),
    ("TOP_K", "0", "TOP_K"),
    ("MIN_SIMILARITY", "2", "MIN_SIMILARITY"),
    ("ASSISTANT_SAMPLE_DOCS", "maybe", "ASSISTANT_SAMPLE_DOCS"),
    ("TEXT_SEARCH_CONFIG", "x'; drop", "TEXT_SEARCH_CONFIG"),
    ("EMBEDDING_MODEL", "my/model", "EMBEDDING_DIM"),
])
def test_bad_values_name_the_variable(clean_env, name, value, needle):
    clean_env.setenv(name, value)
    if name == "EMBEDDING_MODEL":
        clean_env.setenv("EMBEDDING_PROVIDER", "hf")
    with pytest.raises(ConfigError, match=needle) as info:
        Settings.from_env()
    assert "\n" not in str(info.value)


def test_openai_provider_needs_a_url(clean_env):
    clean_env.setenv("EMBEDDING_PROVIDER", "openai")
    with pytest.raises(ConfigError, match="EMBEDDING_API_URL"):
        Settings.from_env()


def test_local_provider_runs_only_e5_small(clean_env):
    clean_env.setenv("EMBEDDING_MODEL", "intfloat/multilingual-e5-base")
    with pytest.raises(ConfigError, match="local"):
        Settings.from_env()


def test_allowed_origins_are_split(clean_env):
    clean_env.setenv("ALLOWED_ORIGINS", "https://a.example, https://b.example,")
    assert Settings.from_env().allowed_origins == ("https://a.example", "https://b.example")


# -- derived from the declarations ------------------------------------------------------------------

def _declared() -> list[tuple[str, Var, object]]:
    return [(f.name, var, default) for f, var, default in declared(Settings)]


def test_readme_table_is_the_generated_one():
    text = README.read_text()
    start = text.index("| Variable | Default | What it does |")
    end = text.index("\n\n", start)
    assert text[start:end] == markdown_table(), (
        "README's configuration table differs from assistant/config.py: paste `python -m assistant config --markdown`")


def test_env_names_include_aliases():
    assert {"HF_TOKEN", "CHAINLIT_HOST", "CHAINLIT_PORT"} | set(Settings.ENV.values()) == env_names()
    assert Settings.ENV["chainlit_auth_secret"] == "CHAINLIT_AUTH_SECRET" and Settings.ENV["port"] == "PORT"


ALIAS_SAMPLES = {"hf_token": ("hf_one", "hf_two"), "host": ("0.0.0.0", "10.1.2.3"), "port": ("9001", "9002")}


@pytest.mark.parametrize(("name", "var"), [(n, v) for n, v, _ in _declared() if v.aliases])
def test_each_alias_is_read_and_the_first_name_wins(name, var):
    assert name in ALIAS_SAMPLES, f"give {var.env}'s aliases sample values here"
    first, second = ALIAS_SAMPLES[name]
    for alias in var.aliases:
        alone = Settings.from_env(dotenv=False, environ={alias: second})
        assert str(getattr(alone, name)) == second
        both = Settings.from_env(dotenv=False, environ={alias: second, var.env: first})
        assert str(getattr(both, name)) == first


def _below(var: Var, bound: float) -> str:
    return str(bound - 1) if var.kind is int else str(round(bound - 0.001, 6))


def _above(var: Var, bound: float) -> str:
    return str(bound + 1) if var.kind is int else str(round(bound + 0.001, 6))


@pytest.mark.parametrize(("name", "var"), [(n, v) for n, v, _ in _declared()
                                           if isinstance(v.low, int | float) and isinstance(v.high, int | float)])
def test_each_range_is_enforced_at_both_ends(name, var):
    context = RANGE_CONTEXT.get(var.env, {})
    for good in (var.low, var.high):
        value = getattr(Settings.from_env(dotenv=False, environ={**context, var.env: str(good)}), name)
        assert value == good
    for bad in (_below(var, var.low), _above(var, var.high), "lots"):
        with pytest.raises(ConfigError, match=f"^{var.env}=") as info:
            Settings.from_env(dotenv=False, environ={**context, var.env: bad})
        assert "\n" not in str(info.value)


# Settings a range needs around it: any vector size is only valid for a model the app does not know.
RANGE_CONTEXT = {"EMBEDDING_DIM": {"EMBEDDING_PROVIDER": "hf", "EMBEDDING_MODEL": "example/unknown-model"}}


def test_a_dimension_that_does_not_fit_the_local_model_is_refused_when_settings_are_read():
    with pytest.raises(ConfigError, match=r"^EMBEDDING_DIM=768 but intfloat/multilingual-e5-small has 384$"):
        Settings.from_env(dotenv=False, environ={"EMBEDDING_DIM": "768"})


def test_overlap_range_follows_chunk_tokens():
    s = Settings.from_env(dotenv=False, environ={"CHUNK_TOKENS": "100", "CHUNK_OVERLAP": "50"})
    assert (s.chunk_tokens, s.chunk_overlap) == (100, 50)
    with pytest.raises(ConfigError, match=r"CHUNK_OVERLAP=51 is out of range; use 0\.\.50"):
        Settings.from_env(dotenv=False, environ={"CHUNK_TOKENS": "100", "CHUNK_OVERLAP": "51"})


@pytest.mark.parametrize(("raw", "value"), [("1", True), ("yes", True), ("ON", True), ("0", False), ("off", False),
                                            (" ", True)])
def test_booleans(raw, value):
    assert Settings.from_env(dotenv=False, environ={"ASSISTANT_SAMPLE_DOCS": raw}).sample_docs is value


def test_chainlit_cookie_samesite_takes_chainlits_own_values():
    assert Settings.from_env(dotenv=False, environ={}).chainlit_cookie_samesite == "lax"
    with pytest.raises(ConfigError, match="CHAINLIT_COOKIE_SAMESITE='None' is not known; use one of lax, strict, none"):
        Settings.from_env(dotenv=False, environ={"CHAINLIT_COOKIE_SAMESITE": "None"})  # Chainlit would assert


def test_secrets_stay_out_of_repr():
    secrets = {"DATABASE_URL": "postgresql://u:Pw-1234567@h/db", "HF_TOKEN": "hf_Secret-1234",
               "EMBEDDING_API_KEY": "Emb-1234567", "OPENAI_API_KEY": "sk-Secret-1234",
               "CHAINLIT_AUTH_SECRET": "Auth-Secret-1234"}
    text = repr(Settings.from_env(dotenv=False, environ=secrets))
    assert not [value for value in secrets.values() if value in text]


# -- .env: under the real environment, never written into it ------------------------------------------

def test_dotenv_is_layered_under_the_environment_and_not_written_into_it(clean_env, tmp_path):
    (tmp_path / ".env").write_text("TOP_K=7\nCHAINLIT_AUTH_SECRET=from-dotenv\nNOT_A_SETTING=kept\nTOP_K=9\n")
    clean_env.setenv("RRF_K", "30")
    clean_env.delenv("NOT_A_SETTING", raising=False)
    s = Settings.from_env()
    assert (s.top_k, s.rrf_k, s.chainlit_auth_secret) == (7, 30, "from-dotenv")  # the first TOP_K line wins
    assert "TOP_K" not in os.environ and "CHAINLIT_AUTH_SECRET" not in os.environ and "NOT_A_SETTING" not in os.environ
    merged = environment()
    assert merged["NOT_A_SETTING"] == "kept" and merged["RRF_K"] == "30" and merged["PATH"] == os.environ["PATH"]
    assert Settings.from_env(dotenv=False).top_k == 5


def _assistant_imports(module: str) -> set[str]:
    tree = ast.parse((README.parent / (module.replace(".", "/") + ".py")).read_text())
    found = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    found |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    return {name for name in found if name.startswith("assistant")}


def test_config_and_auth_import_no_feature_layer():
    """The arrows point down: errors, env and auth are foundations; config uses them, never the
    retrieval package's errors, the chat or the UI (and retrieval.errors re-exports the same classes)."""
    assert _assistant_imports("assistant.errors") == set()
    assert _assistant_imports("assistant.env") == _assistant_imports("assistant.auth") == {"assistant.errors"}
    upward = {m for m in _assistant_imports("assistant.config") if m.startswith(("assistant.chat", "assistant.ui"))}
    assert "assistant.retrieval.errors" not in _assistant_imports("assistant.config") and not upward
    script = ("import sys, assistant.auth, assistant.env, assistant.errors\n"
              "assert not [m for m in sys.modules if m.startswith('assistant.retrieval')]\n"
              "from assistant.retrieval import errors\n"
              "assert errors.ConfigError is assistant.errors.ConfigError\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=README.parent, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr


# -- `python -m assistant config` ------------------------------------------------------------------------

def test_config_command_shows_values_and_sources_but_no_secret(clean_env, tmp_path, capsys):
    (tmp_path / ".env").write_text("TOP_K=7\nHF_TOKEN=hf_Secret-98765\n")
    clean_env.setenv("CHAINLIT_PORT", "9100")
    clean_env.setenv("ASSISTANT_DATA_DIR", str(tmp_path / "data"))
    assert cli_main(["config"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split(None, 2)[1:] for line in out.splitlines()}
    assert rows["TOP_K"] == ["7", ".env"] and rows["RRF_K"] == ["60", "default"]
    assert rows["HUGGINGFACE_TOKEN"] == ["(set)", ".env (HF_TOKEN)"]
    assert rows["PORT"] == ["9100", "environment (CHAINLIT_PORT)"]
    assert list(rows) == list(Settings.ENV.values()) and "hf_Secret-98765" not in out


def test_config_command_markdown_and_bad_values(clean_env, capsys):
    clean_env.setenv("TOP_K", "0")  # --markdown prints the declarations: the environment does not matter
    assert cli_main(["config", "--markdown"]) == 0
    assert capsys.readouterr().out == markdown_table() + "\n"
    assert cli_main(["config"]) == 1
    assert capsys.readouterr().err == "error: TOP_K=0 is out of range; use 1..50 (default 5)\n"
