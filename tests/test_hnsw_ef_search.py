"""The ef_search `Store.vector_search` gives the HNSW index: the configured floor, the larger
filtered floor when a filter is set, growth with the table's size above 250k chunks (the size
comes from the planner's row estimate, faked here), and pgvector's cap of 1000.

The values are read back from `set_config`, which returns what it set, through a cursor spy on
the store's own connection, so the test sees exactly what the search ran with."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import psycopg
import pytest

from assistant.retrieval.filters import Filters
from assistant.retrieval.store import Store
from assistant.retrieval.types import Chunk, LoadedDocument
from tests.conftest import make_settings

N_CHUNKS = 30


class _EfSpy(psycopg.Cursor):
    """Records the value of every `set_config('hnsw.ef_search', ...)` the store runs."""

    seen: ClassVar[list[int]] = []

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> _EfSpy:
        super().execute(query, params, **kwargs)
        if isinstance(query, str) and "set_config('hnsw.ef_search'" in query:
            row = self.fetchone()
            self.seen.append(int(row["set_config"] if isinstance(row, dict) else row[0]))
        return self


@pytest.fixture
def store(database_url: str, tmp_path) -> Iterator[Store]:
    s = Store.open(make_settings(database_url=database_url, data_dir=tmp_path / "data"), announce=False)
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(N_CHUNKS, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    for d in range(3):  # sources a/0.md, a/1.md, b/2.md
        doc = LoadedDocument(source=f"{'ab'[d // 2]}/{d}.md", title=f"Doc {d}", blocks=[], content_hash=str(d))
        chunks = [Chunk(i, f"chunk {d}-{i}", ()) for i in range(N_CHUNKS // 3)]
        s.replace_document(doc, chunks, vectors[d * 10:(d + 1) * 10])
    with s.connection() as conn:  # no autovacuum: it would replace the faked row estimate
        conn.execute("ALTER TABLE chunks SET (autovacuum_enabled = false)")
        conn.execute("ANALYZE chunks")
        conn.commit()
    yield s
    s.close()


def _rows_estimate(store: Store, rows: float) -> None:
    with store.connection() as conn:
        conn.execute("UPDATE pg_class SET reltuples = %s WHERE oid = 'chunks'::regclass", (rows,))
        conn.commit()


def _ef_used(store: Store, k: int, filters: Filters | None = None) -> tuple[int, int]:
    """(ef_search the search ran with, hits returned)."""
    inner = store.connection

    @contextlib.contextmanager
    def spying() -> Iterator[psycopg.Connection]:
        with inner() as conn:
            conn.cursor_factory = _EfSpy
            try:
                yield conn
            finally:
                conn.cursor_factory = psycopg.Cursor

    _EfSpy.seen.clear()
    store.connection = spying  # type: ignore[method-assign]
    try:
        hits = store.vector_search(np.ones(384, dtype=np.float32) / np.sqrt(384), k, filters)
    finally:
        del store.connection
    assert len(_EfSpy.seen) == 1
    return _EfSpy.seen[0], len(hits)


def test_small_table_uses_the_configured_floors(store: Store) -> None:
    assert _ef_used(store, 10) == (100, 10)
    ef, n = _ef_used(store, 10, Filters(source_prefix="a/"))
    assert (ef, n) == (400, 10)
    assert _ef_used(store, 25) == (100, 25)


def test_ef_search_grows_with_the_table_and_stops_at_1000(store: Store) -> None:
    _rows_estimate(store, 200_000)  # below 250k: the floors
    assert _ef_used(store, 10)[0] == 100
    _rows_estimate(store, 1_000_000)
    assert _ef_used(store, 10)[0] == 400
    assert _ef_used(store, 10, Filters(source_prefix="b/"))[0] == 800
    _rows_estimate(store, 50_000_000)
    assert _ef_used(store, 10)[0] == 1000
    assert _ef_used(store, 10, Filters(source_prefix="b/")) == (1000, 10)


def test_settings_raise_the_floors_and_k_wins_when_larger(store: Store) -> None:
    store.settings = dataclasses.replace(store.settings, hnsw_ef_search=300, hnsw_filtered_ef_search=200)
    assert _ef_used(store, 10)[0] == 300
    assert _ef_used(store, 10, Filters(source_prefix="a/"))[0] == 300  # never below the unfiltered value
    store.settings = dataclasses.replace(store.settings, hnsw_ef_search=5, hnsw_filtered_ef_search=5)
    assert _ef_used(store, 30) == (30, 30)
