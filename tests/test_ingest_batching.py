"""Ingest batches embedding requests across documents, and stays per-document where it matters.

A folder of small files must make full requests (one per EMBEDDING_BATCH_SIZE chunks), not one
request per file; vectors still reach the right document in order, each document is still written
in its own transaction, and an embedding failure still names the first document not written and
stops the run.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from assistant.retrieval.errors import EmbeddingError, IngestError
from assistant.retrieval.ingest import embed_documents, ingest_paths
from assistant.retrieval.store import Store
from assistant.retrieval.types import Chunk, LoadedDocument, embedding_text

DIM = 384


class RecordingEmbedder:
    """Vectors keyed by the text (so any batching gives the same vector per passage); records calls."""

    provider, model, dim = "local", "intfloat/multilingual-e5-small", DIM

    def __init__(self, fail_on_call: int | None = None, error: Exception | None = None) -> None:
        self.batches: list[list[str]] = []
        self.fail_on_call, self.error = fail_on_call, error

    @staticmethod
    def vector(text: str) -> np.ndarray:
        v = np.random.default_rng(zlib.crc32(text.encode())).standard_normal(DIM).astype(np.float32)
        return v / np.linalg.norm(v)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        self.batches.append(list(texts))
        if self.fail_on_call is not None and len(self.batches) == self.fail_on_call:
            raise self.error or EmbeddingError("Hugging Face API returned 503 after 3 tries", retryable=True)
        return np.stack([self.vector(t) for t in texts])

    def embed_query(self, text: str) -> np.ndarray:
        return self.vector("query: " + text)

    def close(self) -> None:
        pass


def make_doc(name: str, n_chunks: int) -> tuple[LoadedDocument, list[Chunk]]:
    doc = LoadedDocument(source=f"/docs/{name}", title=name, blocks=[], content_hash=name, metadata={})
    return doc, [Chunk(i, f"{name} passage {i}", ("Section",)) for i in range(n_chunks)]


def test_batches_span_documents_and_vectors_stay_with_their_document() -> None:
    docs = [make_doc(f"d{i}", n) for i, n in enumerate([3, 40, 1, 7, 30, 2])]  # 83 chunks
    embedder = RecordingEmbedder()
    progress: list[int] = []
    out = list(embed_documents(docs, embedder, 32, progress.append))  # type: ignore[arg-type]
    assert [len(b) for b in embedder.batches] == [32, 32, 19]  # not 7 requests, one per document
    assert progress == [32, 32, 19]
    assert len(out) == len(docs)
    for (doc, chunks), vectors in zip(docs, out, strict=True):
        expected = np.stack([embedder.vector(embedding_text(doc.title, c)) for c in chunks])
        np.testing.assert_array_equal(vectors, expected)


def test_documents_are_handed_out_as_soon_as_their_vectors_are_complete() -> None:
    docs = [make_doc(f"d{i}", n) for i, n in enumerate([2, 2, 5])]
    embedder = RecordingEmbedder()
    stream = embed_documents(docs, embedder, 4)  # type: ignore[arg-type]
    assert len(next(stream)) == 2 and len(embedder.batches) == 1
    assert len(next(stream)) == 2 and len(embedder.batches) == 1  # already embedded in the first batch
    assert len(next(stream)) == 5 and [len(b) for b in embedder.batches] == [4, 4, 1]
    assert next(stream, None) is None


def write_docs(folder: Path, sizes: Sequence[int]) -> list[Path]:
    paths = []
    for i, paragraphs in enumerate(sizes):
        body = "\n\n".join(f"## Part {k}\n\nFile {i} part {k} says something distinct." for k in range(paragraphs))
        path = folder / f"doc{i}.md"
        path.write_text(f"# Document {i}\n\n{body}\n")
        paths.append(path)
    return paths


@pytest.fixture
def store(settings):
    s = Store.open(settings, announce=False)
    yield s
    s.close()


def test_ingest_of_many_small_files_makes_full_requests(store, settings, tmp_path):
    paths = write_docs(tmp_path, [2, 3, 1, 4, 2, 3])  # 15 chunks in 6 files
    embedder = RecordingEmbedder()
    settings = dataclasses.replace(settings, embedding_batch_size=8)
    report = ingest_paths([tmp_path], store, embedder, settings, progress=False, log=lambda _: None)
    assert report.ok and len(report.added) == 6 and report.chunks == 15
    assert [len(b) for b in embedder.batches] == [8, 7]
    assert store.status()["chunks"] == 15 and store.document_count() == 6
    assert [Path(p).name for p in report.added] == [p.name for p in paths]


def test_an_embedding_failure_names_the_first_unwritten_document_and_stops(store, settings, tmp_path):
    write_docs(tmp_path, [3, 3, 3, 3])  # batches of 4: doc0 is complete after the first batch
    embedder = RecordingEmbedder(fail_on_call=2)
    settings = dataclasses.replace(settings, embedding_batch_size=4)
    report = ingest_paths([tmp_path], store, embedder, settings, progress=False, log=lambda _: None)
    assert [Path(p).name for p in report.added] == ["doc0.md"]
    assert [(Path(p).name, r) for p, r in report.failed] == [
        ("doc1.md", "Hugging Face API returned 503 after 3 tries"),
        ("doc2.md", "not attempted: stopped after the error above"),
        ("doc3.md", "not attempted: stopped after the error above"),
    ]
    assert store.document_count() == 1 and len(embedder.batches) == 2


def test_a_document_only_error_skips_that_document_and_goes_on(store, settings, tmp_path):
    write_docs(tmp_path, [3, 3, 3])
    embedder = RecordingEmbedder(fail_on_call=1, error=IngestError("this one cannot be embedded"))
    settings = dataclasses.replace(settings, embedding_batch_size=4)
    report = ingest_paths([tmp_path], store, embedder, settings, progress=False, log=lambda _: None)
    assert [(Path(p).name, r) for p, r in report.failed] == [("doc0.md", "this one cannot be embedded")]
    assert [Path(p).name for p in report.added] == ["doc1.md", "doc2.md"]
    assert store.document_count() == 2 and store.status()["chunks"] == 6
