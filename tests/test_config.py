"""Settings: defaults, validation with one-line errors naming the variable, and the README table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from assistant.config import Settings, settings_fields
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
