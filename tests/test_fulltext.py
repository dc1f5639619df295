"""Okapi BM25 in PostgreSQL: the statistics tables stay exact through any sequence of writes (a
recount agrees after random adds, replaces, deletes and killed transactions), the migration
backfills an existing database, and the ranking is BM25's."""

from __future__ import annotations

import math
import threading

import numpy as np
import psycopg
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from assistant.retrieval import fulltext
from assistant.retrieval.migrations import migrate
from assistant.retrieval.store import Store
from assistant.retrieval.store_schema import schema_steps
from assistant.retrieval.types import Chunk, LoadedDocument

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "the", "of"]


def _vectors(n: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, 384)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _write(store: Store, source: str, texts: list[str]) -> None:
    doc = LoadedDocument(source=source, title=source.strip("/").title(), blocks=[],
                         content_hash=str(hash(tuple(texts))))
    chunks = [Chunk(i, t, (), None, len(t.split())) for i, t in enumerate(texts)]
    store.replace_document(doc, chunks, _vectors(len(chunks)))


def recount(conn: psycopg.Connection) -> tuple[dict[str, int], int, int]:
    """The statistics as a fresh count from the chunks sees them."""
    df = dict(conn.execute("SELECT w, count(*) FROM chunks, unnest(tsvector_to_array(tsv)) w GROUP BY w").fetchall())
    n, total = conn.execute("SELECT count(*), coalesce(sum(greatest(token_count, 1)), 0) FROM chunks").fetchone()
    return {k: int(v) for k, v in df.items()}, int(n), int(total)


def kept(conn: psycopg.Connection) -> tuple[dict[str, int], int, int]:
    """The statistics as the triggers keep them."""
    df = dict(conn.execute("SELECT lexeme, df FROM fulltext_terms").fetchall())
    n, total = conn.execute("SELECT chunks, total_length FROM fulltext_stats").fetchone()
    return {k: int(v) for k, v in df.items()}, int(n), int(total)


def _kill_mid_write(store: Store, source: str, texts: list[str]) -> None:
    """Start replacing a document, then have the server kill that connection before the commit,
    as when an ingest is killed (or the machine loses power) halfway through a document."""
    conn = psycopg.connect(store.location.url, autocommit=False)
    pid = conn.info.backend_pid
    try:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (fulltext.FULLTEXT_LOCK_KEY,))
        doc_id = conn.execute(
            "INSERT INTO documents (source, title, content_hash) VALUES (%s, 'x', 'x')"
            " ON CONFLICT (source) DO UPDATE SET content_hash = 'x' RETURNING id", (source,)).fetchone()[0]
        conn.execute("DELETE FROM chunks WHERE document_id = %s", (doc_id,))
        for i, text in enumerate(texts):
            conn.execute("INSERT INTO chunks (document_id, ordinal, text, token_count, embedding)"
                         " VALUES (%s, %s, %s, %s, %s::vector)", (doc_id, i, text, len(text.split()),
                                                                  str(_vectors(1, i)[0].tolist())))
        with psycopg.connect(store.location.url, autocommit=True) as killer:
            killer.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
    finally:
        conn.close()


texts_st = st.lists(st.lists(st.sampled_from(WORDS), min_size=1, max_size=8).map(" ".join), min_size=1, max_size=4)
ops_st = st.lists(st.tuples(st.sampled_from(["write", "delete", "kill", "prune"]), st.integers(0, 4), texts_st),
                  min_size=1, max_size=12)


@pytest.fixture
def store(settings):
    s = Store.open(settings, announce=False)
    yield s
    s.close()


@pytest.mark.reliability
@hsettings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=ops_st)
def test_statistics_equal_a_recount_after_any_sequence_of_writes(store, ops):
    with store.connection() as conn:
        conn.execute("TRUNCATE documents CASCADE")
    for op, which, texts in ops:
        source = f"/kb/doc{which}.md"
        if op == "write":
            _write(store, source, texts)
        elif op == "delete":
            store.delete_documents([source])
        elif op == "prune":
            store.delete_documents([f"/kb/doc{i}.md" for i in range(which + 1)])
        else:
            _kill_mid_write(store, source, texts)
        with store.connection() as conn:
            assert kept(conn) == recount(conn), (op, which, texts)


def test_concurrent_writers_keep_the_counts_exact(store):
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(6):
                _write(store, f"/kb/w{n}-{i % 3}.md", [f"alpha beta {n}", f"gamma {i} the"])
                if i % 2:
                    store.delete_documents([f"/kb/w{(n + 1) % 3}-{i % 3}.md"])
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with store.connection() as conn:
        assert kept(conn) == recount(conn)


def test_migration_backfills_an_existing_database(settings):
    """A database made before the BM25 tables existed (schema version 1, chunks stored) is counted."""
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        migrate(conn, "retrieval", schema_steps(384, "simple")[:1])
        doc = conn.execute("INSERT INTO documents (source, title, content_hash) VALUES ('/old.md', 'Old', 'h')"
                           " RETURNING id").fetchone()[0]
        for i, text in enumerate(["an old chunk about zebras", "another old chunk"]):
            conn.execute("INSERT INTO chunks (document_id, ordinal, text, token_count, embedding)"
                         " VALUES (%s, %s, %s, %s, %s::vector)", (doc, i, text, 5, str(_vectors(1, i)[0].tolist())))
        assert conn.execute("SELECT to_regclass('fulltext_terms')").fetchone()[0] is None
    store = Store.open(settings, announce=False)
    try:
        with store.connection() as conn:
            assert kept(conn) == recount(conn)
            assert kept(conn)[0]["old"] == 2
        status = store.status()["fulltext"]
        assert status["chunks"] == 2 and status["average_length"] == 5.0 and status["terms"] == 6
        assert store.text_search("zebras", 5)[0].text == "an old chunk about zebras"
    finally:
        store.close()


def test_dotted_names_are_matched_by_their_words(store):
    """`threading.RLock` in a question finds a section that says `RLock`, and `Lock` finds `threading.Lock`
    (the PostgreSQL parser would keep each dotted name as one lexeme no other spelling matches); a dot
    between digits stays part of the number."""
    texts = ["class threading.Lock is the primitive lock", "an RLock may be acquired again by its owner",
             "join paths with os.path.join, new in version 3.11"]
    _write(store, "/kb/t.md", texts)
    assert texts[1] in [h.text for h in store.text_search("threading.RLock", 5)]
    assert store.text_search("Lock", 5)[0].text == texts[0]
    assert store.text_search("how do I join a path", 5)[0].text == texts[2]
    with store.connection() as conn:
        assert {"threading", "lock", "os", "path", "join"} <= set(kept(conn)[0])
        assert [w for w in kept(conn)[0] if "." in w] == ["3.11"]  # a number stays one word


def test_migration_splits_dotted_names_of_an_existing_database(settings):
    """A database indexed before dotted names were split (schema version 2) is re-indexed and recounted."""
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        migrate(conn, "retrieval", schema_steps(384, "simple")[:2])
        doc = conn.execute("INSERT INTO documents (source, title, content_hash) VALUES ('/old.md', 'Old', 'h')"
                           " RETURNING id").fetchone()[0]
        conn.execute("INSERT INTO chunks (document_id, ordinal, text, token_count, embedding)"
                     " VALUES (%s, 0, 'call os.path.join', 2, %s::vector)", (doc, str(_vectors(1)[0].tolist())))
        assert kept(conn)[0].get("os.path.join") == 1
    store = Store.open(settings, announce=False)
    try:
        with store.connection() as conn:
            assert kept(conn) == recount(conn)
            assert "os.path.join" not in kept(conn)[0] and kept(conn)[0]["join"] == 1
        assert store.text_search("join", 5)[0].text == "call os.path.join"
    finally:
        store.close()


def test_text_search_config_change_recounts(settings):
    import dataclasses

    store = Store.open(settings, announce=False)
    _write(store, "/kb/e.md", ["deleting documents", "deleted files"])
    store.close()
    english = Store.open(dataclasses.replace(settings, text_search_config="english"), announce=False)
    try:
        with english.connection() as conn:
            assert kept(conn) == recount(conn)
            assert kept(conn)[0]["delet"] == 2  # 'english' stems both words to one lexeme
    finally:
        english.close()


def test_scores_are_okapi_bm25(store):
    texts = ["zebra zebra grazing", "zebra in the long grass of the plain", "lion resting"]
    _write(store, "/kb/z.md", texts)
    hits = store.text_search("zebra grazing", 5)
    n, lengths = 3, [3, 8, 2]
    avgdl = sum(lengths) / n

    def bm25(tf: int, df: int, dl: int) -> float:
        idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
        return idf * tf * (fulltext.K1 + 1) / (tf + fulltext.K1 * (1 - fulltext.B + fulltext.B * dl / avgdl))

    expected = {texts[0]: bm25(2, 2, 3) + bm25(1, 1, 3), texts[1]: bm25(1, 2, 8)}
    assert [h.text for h in hits] == [texts[0], texts[1]]
    for hit in hits:
        assert hit.text_score == pytest.approx(expected[hit.text], rel=1e-6)
    assert hits[0].text_matched == pytest.approx(1.0)
    assert 0 < hits[1].text_matched < 0.5  # matched 'zebra' only, the commoner of the two words


def test_candidates_come_from_the_rarest_words_first():
    terms = fulltext.QueryTerms(("common", "rare", "unseen", "mid"), (5000, 3, 0, 1500), (0.1, 5.0, 9.0, 1.0),
                                10000, 50.0)
    assert terms.candidate_words(budget=2000) == ["rare", "mid"]
    assert terms.candidate_words(budget=10) == ["rare"]
    only_common = fulltext.QueryTerms(("the",), (9000,), (0.1,), 10000, 50.0)
    assert only_common.candidate_words(budget=10) == ["the"]  # always at least one word
    assert fulltext.QueryTerms(("xyz",), (0,), (9.0,), 10, 5.0).candidate_words() == []


def test_shares_of_words_the_documents_never_use():
    terms = fulltext.QueryTerms(("how", "numpy", "reshape"), (900, 0, 4), (0.5, 9.0, 5.5), 1000, 50.0)
    assert terms.unknown_share == pytest.approx(9.0 / 15.0) and terms.known_share == pytest.approx(2 / 3)
    nothing = fulltext.QueryTerms((), (), (), 1000, 50.0)  # punctuation only
    assert nothing.unknown_share == 0.0 and nothing.known_share == 0.0


@pytest.mark.parametrize("word", ["it's", "back\\slash", "a|b", "(x)", "!not", "ünïcödé", "'"])
def test_query_words_with_tsquery_syntax_are_only_data(store, word):
    _write(store, "/kb/s.md", [f"some text with {word} inside", "other text"])
    hits = store.text_search(word, 5)
    assert all(isinstance(h.text_score, float) for h in hits)
