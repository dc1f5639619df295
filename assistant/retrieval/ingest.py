"""Ingestion: files -> loaders -> chunks -> passage embeddings -> one transaction per document.

Unchanged files (same content hash) are skipped before any embedding work; a bad file is
reported and skipped while the run goes on; the report says what happened to every path.
"""

from __future__ import annotations

import itertools
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import numpy as np

from assistant.retrieval.chunking import chunk_document
from assistant.retrieval.errors import AssistantError, DatabaseError, EmbeddingError, IngestError
from assistant.retrieval.loaders import SUPPORTED_SUFFIXES, load_file
from assistant.retrieval.sample_vectors import SAMPLE_DOCS_DIR, PrecomputedPassages, load_vectors
from assistant.retrieval.types import Chunk, LoadedDocument, embedding_text

if TYPE_CHECKING:
    from assistant.config import Settings
    from assistant.retrieval.embedders import Embedder
    from assistant.retrieval.store import Store


@dataclass
class IngestReport:
    """What one run did, path by path."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, one-line reason)
    pruned: list[str] = field(default_factory=list)
    chunks: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        parts = [f"{len(self.added)} added", f"{len(self.updated)} updated", f"{len(self.unchanged)} unchanged"]
        if self.pruned:
            parts.append(f"{len(self.pruned)} pruned")
        parts.append(f"{len(self.failed)} failed")
        return f"Ingest: {', '.join(parts)}; {self.chunks} chunks embedded in {self.seconds:.1f} s"


class Progress:
    """A one-line progress bar with rate and ETA on a terminal; sparse log lines otherwise."""

    def __init__(self, total: int, label: str = "embedding", stream: TextIO | None = None) -> None:
        self.total, self.label, self.done = total, label, 0
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.start = self.last = time.monotonic()

    def advance(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.tty or now - self.last >= 5 or self.done >= self.total:
            self.last = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        elapsed = max(now - self.start, 1e-6)
        rate = self.done / elapsed
        left = (self.total - self.done) / rate if rate > 0 else 0.0
        frac = self.done / self.total if self.total else 1.0
        bar = "#" * int(frac * 24)
        line = (f"{self.label} [{bar:<24}] {self.done}/{self.total} chunks"
                f" {rate:.1f}/s ETA {_fmt_seconds(left)}")
        if self.tty:
            self.stream.write("\r" + line + ("\n" if self.done >= self.total else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def _fmt_seconds(s: float) -> str:
    s = round(s)
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def discover(paths: Iterable[str | Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Expand folders (recursively, skipping hidden ones) into supported files, once each.

    Explicitly named files keep their suffix check in the loader so an unknown type is reported.
    """
    files: list[Path] = []
    problems: list[tuple[str, str]] = []
    seen: set[Path] = set()

    def add(p: Path) -> None:
        real = p.resolve()
        if real not in seen:
            seen.add(real)
            files.append(real)

    for raw in paths:
        p = Path(raw).expanduser()
        if p.is_dir():
            for root, dirs, names in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(names):
                    if not name.startswith(".") and Path(name).suffix.lower() in SUPPORTED_SUFFIXES:
                        add(Path(root) / name)
        elif p.is_file():
            add(p)
        elif p.exists():
            problems.append((str(p), "not a regular file"))
        else:
            problems.append((str(p), "no such file or folder"))
    return files, problems


@dataclass
class _Pending:
    doc: LoadedDocument
    chunks: list[Chunk]
    is_new: bool


def ingest_paths(
    paths: Sequence[str | Path],
    store: Store,
    embedder: Embedder,
    settings: Settings,
    *,
    prune: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    sources: Iterable[tuple[str, Callable[[], LoadedDocument | None]]] = (),
) -> IngestReport:
    """Ingest files and folders; never raises for one bad file (see the report).

    `sources` are more documents as (name, load) pairs, e.g. crawled web pages: load() returns the
    document, None when its source says it is unchanged, or raises IngestError.
    """
    say = log or (lambda msg: print(msg, file=sys.stderr))
    started = time.monotonic()
    report = IngestReport()
    files, problems = discover(paths)
    report.failed += problems
    for path, reason in problems:
        say(f"skipped {path}: {reason}")

    pending: list[_Pending] = []
    loads = [(str(path), partial(load_file, path)) for path in files]
    for path, load in itertools.chain(loads, sources):
        try:
            loaded = load()
            if loaded is None:
                report.unchanged.append(path)
                continue
            doc = loaded
            stored = store.document_hash(doc.source)
            if stored == doc.content_hash:
                report.unchanged.append(doc.source)
                continue
            chunks = chunk_document(doc, max_tokens=settings.chunk_tokens, overlap_tokens=settings.chunk_overlap)
            if not chunks:
                raise IngestError(f"{Path(path).name}: no text to index")
            pending.append(_Pending(doc, chunks, stored is None))
        except IngestError as err:
            report.failed.append((str(path), str(err)))
            say(f"skipped {path}: {err}")
        except OSError as err:
            report.failed.append((str(path), f"cannot read: {err.strerror}"))
            say(f"skipped {path}: cannot read ({err.strerror})")

    total = sum(len(p.chunks) for p in pending)
    bar = Progress(total) if progress and total else None
    done = 0  # pending[:done] are written or reported
    while done < len(pending):
        vectors_of = embed_documents([(p.doc, p.chunks) for p in pending[done:]], embedder,
                                     settings.embedding_batch_size, bar.advance if bar else None)
        try:
            for vectors in vectors_of:
                item = pending[done]
                store.replace_document(item.doc, item.chunks, vectors)
                report.chunks += len(item.chunks)
                (report.added if item.is_new else report.updated).append(item.doc.source)
                done += 1
        except (EmbeddingError, DatabaseError) as err:
            # The provider or the database is down: every other file would fail the same way,
            # each after a full deadline. Stop, and say which files were not attempted.
            source = pending[done].doc.source
            report.failed.append((source, str(err)))
            say(f"failed {source}: {err}")
            rest = pending[done + 1:]
            report.failed += [(p.doc.source, "not attempted: stopped after the error above") for p in rest]
            if rest:
                say(f"stopped: {len(rest)} more files not attempted; run ingest again when this is fixed")
            break
        except AssistantError as err:  # this document only: embedding starts again after it
            source = pending[done].doc.source
            report.failed.append((source, str(err)))
            say(f"failed {source}: {err}")
            done += 1

    if prune:
        report.pruned = prune_missing(store, paths)
        for source in report.pruned:
            say(f"pruned {source} (file is gone)")
    report.seconds = time.monotonic() - started
    return report


def embed_documents(docs: Sequence[tuple[LoadedDocument, Sequence[Chunk]]], embedder: Embedder,
                    batch_size: int, on_progress: Callable[[int], None] | None = None) -> Iterator[np.ndarray]:
    """Passage vectors of each document's chunks (title and headings as context), one array per
    document, in order, each as soon as its last batch is embedded.

    Batches span documents, so a folder of small files makes full requests (one per `batch_size`
    chunks) rather than one per file: each request to a remote embedder costs a round trip and
    counts against its rate limit.
    """
    waiting: deque[int] = deque()  # chunk counts of the documents not handed out yet
    ready = np.zeros((0, embedder.dim), dtype=np.float32)  # embedded rows not handed out yet
    batch: list[str] = []
    for doc, chunks in docs:
        waiting.append(len(chunks))
        for chunk in chunks:
            batch.append(embedding_text(doc.title, chunk))
            if len(batch) < batch_size:
                continue
            ready = np.vstack([ready, embedder.embed_passages(batch)])
            if on_progress:
                on_progress(len(batch))
            batch = []
            while waiting and len(ready) >= waiting[0]:
                n = waiting.popleft()
                yield ready[:n]
                ready = ready[n:]
    if batch:
        ready = np.vstack([ready, embedder.embed_passages(batch)])
        if on_progress:
            on_progress(len(batch))
    while waiting:
        n = waiting.popleft()
        yield ready[:n]
        ready = ready[n:]


def prune_missing(store: Store, paths: Sequence[str | Path]) -> list[str]:
    """Delete documents under the given folders whose files no longer exist."""
    roots = [Path(p).expanduser().resolve() for p in paths]
    gone = []
    for source in store.sources():
        if "://" in source:
            continue
        path = Path(source)
        if any(path == r or r in path.parents for r in roots) and not path.exists():
            gone.append(source)
    store.delete_documents(gone)
    return gone


def ensure_sample_corpus(store: Store, embedder: Embedder, settings: Settings,
                         log: Callable[[str], None] | None = None) -> IngestReport | None:
    """Index the built-in sample corpus when the database holds no documents (and it is enabled)."""
    if not settings.sample_docs or store.document_count() > 0:
        return None
    say = log or (lambda msg: print(msg, file=sys.stderr))
    say(f"The database has no documents yet: indexing the built-in sample corpus ({SAMPLE_DOCS_DIR})."
        " Set ASSISTANT_SAMPLE_DOCS=0 to skip this.")
    shipped = PrecomputedPassages(embedder, load_vectors())  # skips ~15 s of local embedding
    report = ingest_paths([SAMPLE_DOCS_DIR], store, shipped, settings, log=say)  # type: ignore[arg-type]
    say(report.summary())
    return report
