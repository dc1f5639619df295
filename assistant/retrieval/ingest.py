"""Ingestion: sources -> loaded documents -> plan (chunks, estimate) -> passage embeddings -> store.

Three steps, whatever the source (files here; `ingest_documents` takes loaded documents from any
source, e.g. a web crawl):

1. plan: unchanged documents (same content hash) are skipped before any embedding work, the rest
   are chunked; a bad document is reported and skipped while the run goes on;
2. estimate: the chunk count and the time it will take, measured on the first batches for the
   local model and assumed per provider for remote ones; a caller may then cancel
   (`confirm`), or stop there (`dry_run`: nothing embedded beyond that, nothing written);
3. embed and write, one transaction per document, the database writes overlapping the embedding
   of the next batches (worker processes for the local model with `workers` > 1, else a thread).

The report says what happened to every document. Ctrl-C leaves only whole documents behind (each
is one transaction) and is raised as `IngestInterrupted`, carrying the report so far.

This module is the run itself (planning and the write path); `ingest_sources` finds and loads the
documents, `ingest_plan` holds the plan, the report and the progress bar.
"""

from __future__ import annotations

import itertools
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from assistant.retrieval.chunking import chunk_document
from assistant.retrieval.errors import AssistantError, DatabaseError, EmbeddingError, IngestError
from assistant.retrieval.ingest_plan import IngestInterrupted, IngestPlan, IngestReport, PlannedDocument, Progress
from assistant.retrieval.ingest_sources import (
    Say,
    Source,
    discover,
    load_sources,
    missing_sources,
    nothing_found_message,
    prune_missing,
    without_path,
)
from assistant.retrieval.loaders import load_file
from assistant.retrieval.passage_engine import Batches, PassageEngine, batched, failing
from assistant.retrieval.sample_vectors import SAMPLE_DOCS_DIR, PrecomputedPassages, load_vectors
from assistant.retrieval.types import Chunk, LoadedDocument, embedding_text

if TYPE_CHECKING:
    from assistant.config import Settings
    from assistant.retrieval.embedders import Embedder
    from assistant.retrieval.store import Store

__all__ = [  # the names callers import from here (the CLI, the chat's uploads, tests, bench)
    "SAMPLE_DOCS_DIR", "IngestInterrupted", "IngestPlan", "IngestReport", "PlannedDocument", "Source",
    "discover", "embed_documents", "ensure_sample_corpus", "ingest_documents", "ingest_paths", "missing_sources",
    "prune_missing",
]


def ingest_paths(
    paths: Sequence[str | Path],
    store: Store,
    embedder: Embedder,
    settings: Settings,
    *,
    prune: bool = False,
    progress: bool = True,
    log: Say | None = None,
    workers: int = 1,
    confirm: Callable[[IngestPlan], bool] | None = None,
    dry_run: bool = False,
    sources: Iterable[Source] = (),
) -> IngestReport:
    """Ingest files and folders; never raises for one bad file (see the report).

    `sources` are more documents as (name, load) pairs, e.g. crawled web pages (see `load_sources`).
    `workers` > 1 embeds with that many processes when the embedder is the local model (the
    command line's INGEST_WORKERS); the default keeps everything in this process (chat uploads).
    """
    say = log or (lambda msg: print(msg, file=sys.stderr))
    report = IngestReport()
    skipped: Counter[str] = Counter()
    files, problems = discover(paths, skipped)
    report.failed += problems
    for path, reason in problems:
        say(f"skipped {path}: {reason}")
    if paths and not files and not problems:
        say(nothing_found_message(paths, skipped))
    elif progress and files:
        size = sum(f.stat().st_size for f in files if f.exists())
        shown = f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{max(size / 1000, 1):.0f} kB"
        say(f"Reading and chunking {len(files)} file{'s' if len(files) != 1 else ''} ({shown})...")
    gone = missing_sources(store, paths) if prune else []
    loads: Iterable[Source] = itertools.chain(((str(p), partial(load_file, p)) for p in files), sources)
    return ingest_documents(load_sources(loads, report, say), store, embedder, settings, report=report,
                            prune=gone, progress=progress, log=say, workers=workers, confirm=confirm,
                            dry_run=dry_run)


def ingest_documents(
    documents: Iterable[LoadedDocument],
    store: Store,
    embedder: Embedder,
    settings: Settings,
    *,
    report: IngestReport | None = None,
    prune: Sequence[str] = (),
    progress: bool = True,
    log: Say | None = None,
    workers: int = 1,
    confirm: Callable[[IngestPlan], bool] | None = None,
    dry_run: bool = False,
) -> IngestReport:
    """Plan, estimate, embed and write loaded documents from any source; `prune` lists sources
    to delete after the writes (documents whose origin is gone)."""
    say = log or (lambda msg: print(msg, file=sys.stderr))
    started = time.monotonic()
    report = report if report is not None else IngestReport()
    engine = PassageEngine(embedder, settings, workers)
    bar: Progress | None = None
    try:
        plan = _plan(documents, store, settings, report, say, engine)
        plan.prune = list(prune)
        report.plan = plan
        first = engine.calibrate(plan) if plan.documents else None
        if (plan.documents or plan.prune) and not dry_run:
            say(plan.headline())
        if dry_run or (confirm is not None and plan.documents and not confirm(plan)):
            report.cancelled, report.dry_run = True, dry_run
            report.seconds = time.monotonic() - started
            return report
        total = plan.chunks
        done_rows = len(first) if isinstance(first, np.ndarray) else 0
        bar = Progress(total, already=done_rows) if progress and total else None
        _write(plan.documents, engine, store, report, say, bar, first)
        if plan.prune:
            store.delete_documents(plan.prune)
            report.pruned = list(plan.prune)
            for source in report.pruned:
                say(f"pruned {source} (file is gone)")
    except KeyboardInterrupt:
        if bar:
            bar.break_line()
        report.seconds = time.monotonic() - started
        raise IngestInterrupted(report) from None
    finally:
        engine.close()
    report.seconds = time.monotonic() - started
    return report


def _plan(documents: Iterable[LoadedDocument], store: Store, settings: Settings, report: IngestReport,
          say: Say, engine: PassageEngine) -> IngestPlan:
    """Skip unchanged documents, chunk the rest (the embedding processes start meanwhile)."""
    plan = IngestPlan(engine=engine.description)
    seen: set[str] = set()
    for doc in documents:
        try:
            if doc.source in seen:  # the same document twice in one run (e.g. a file named twice)
                continue
            seen.add(doc.source)
            stored = store.document_hash(doc.source)
            if stored == doc.content_hash:
                report.unchanged.append(doc.source)
                continue
            engine.start()  # something to embed: let the workers load the model while we chunk
            chunks = chunk_document(doc, max_tokens=settings.chunk_tokens, overlap_tokens=settings.chunk_overlap)
            if not chunks:
                raise IngestError(f"{Path(doc.source).name or doc.source}: no text to index")
            plan.documents.append(PlannedDocument(doc, chunks, stored is None))
        except IngestError as err:
            reason = without_path(str(err), doc.source)
            report.failed.append((doc.source, reason))
            say(f"skipped {doc.source}: {reason}")
    plan.unchanged = list(report.unchanged)
    plan.failed = list(report.failed)
    return plan


def _write(pending: list[PlannedDocument], engine: PassageEngine, store: Store, report: IngestReport, say: Say,
           bar: Progress | None, first: np.ndarray | Exception | None) -> None:
    """Embed and write each document in its own transaction, in order; stop at a provider or
    database failure (every other document would fail the same way), skip a document-only one."""

    def tell(msg: str) -> None:
        if bar:
            bar.break_line()
        say(msg)

    done = 0  # pending[:done] are written or reported
    while done < len(pending):
        embed_batches = engine.embed_batches if not isinstance(first, Exception) else failing(first)
        vectors_of = embed_documents([(p.doc, p.chunks) for p in pending[done:]], None, engine.batch_size,
                                     bar.advance if bar else None, embed_batches=embed_batches,
                                     ready=first if isinstance(first, np.ndarray) else None)
        first = None
        try:
            for vectors in vectors_of:
                item = pending[done]
                store.replace_document(item.doc, item.chunks, vectors)
                report.chunks += len(item.chunks)
                (report.added if item.is_new else report.updated).append(item.doc.source)
                done += 1
        except (EmbeddingError, DatabaseError) as err:
            source = pending[done].doc.source
            report.failed.append((source, str(err)))
            tell(f"failed {source}: {err}")
            rest = pending[done + 1:]
            report.failed += [(p.doc.source, "not attempted: stopped after the error above") for p in rest]
            if rest:
                tell(f"stopped: {len(rest)} more documents not attempted; run ingest again when this is fixed")
            break
        except AssistantError as err:  # this document only: embedding starts again after it
            source = pending[done].doc.source
            report.failed.append((source, str(err)))
            tell(f"failed {source}: {err}")
            done += 1
        finally:
            vectors_of.close()  # stops work queued for batches that will not be used


def embed_documents(docs: Sequence[tuple[LoadedDocument, Sequence[Chunk]]], embedder: Embedder | None,
                    batch_size: int, on_progress: Callable[[int], None] | None = None, *,
                    embed_batches: Batches | None = None, ready: np.ndarray | None = None
                    ) -> Iterator[np.ndarray]:
    """Passage vectors of each document's chunks (title and headings as context), one array per
    document, in order, each as soon as its last batch is embedded.

    Batches span documents, so a folder of small files makes full requests (one per `batch_size`
    chunks) rather than one per file: each request to a remote embedder costs a round trip and
    counts against its rate limit. `embed_batches` turns the stream of batches into a stream of
    vectors (default: `embedder.embed_passages` on each, when asked); `ready` holds vectors
    already computed for the first chunks.
    """
    ready = ready if ready is not None else np.zeros((0, 0), dtype=np.float32)
    texts = (embedding_text(doc.title, chunk) for doc, chunks in docs for chunk in chunks)
    batches = batched(islice(texts, len(ready), None), batch_size)
    if embed_batches is None:
        assert embedder is not None, "embed_documents needs an embedder or embed_batches"
        run: Iterator[np.ndarray] = map(embedder.embed_passages, batches)
    else:
        run = embed_batches(batches)
    parts: list[np.ndarray] = [ready] if len(ready) else []
    rows = len(ready)
    try:
        for _, chunks in docs:
            need = len(chunks)
            while rows < need:
                part = next(run)
                if on_progress:
                    on_progress(len(part))
                parts.append(part)
                rows += len(part)
            joined = np.concatenate(parts) if len(parts) != 1 else parts[0]
            yield joined[:need]
            rest = joined[need:]
            parts, rows = ([rest] if len(rest) else []), len(rest)
    finally:
        close = getattr(run, "close", None)
        if close:
            close()


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
