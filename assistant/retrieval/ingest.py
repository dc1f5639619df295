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
"""

from __future__ import annotations

import itertools
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import numpy as np

from assistant.retrieval.chunking import chunk_document
from assistant.retrieval.errors import AssistantError, DatabaseError, EmbeddingError, IngestError
from assistant.retrieval.loaders import SUPPORTED_SUFFIXES, load_file
from assistant.retrieval.passage_engine import Batches, PassageEngine, batched, failing
from assistant.retrieval.sample_vectors import SAMPLE_DOCS_DIR, PrecomputedPassages, load_vectors
from assistant.retrieval.types import Chunk, LoadedDocument, embedding_text

if TYPE_CHECKING:
    from assistant.config import Settings
    from assistant.retrieval.embedders import Embedder
    from assistant.retrieval.store import Store

Say = Callable[[str], None]


@dataclass
class PlannedDocument:
    """A document that needs embedding: new or changed since the last ingest."""

    doc: LoadedDocument
    chunks: list[Chunk]
    is_new: bool


@dataclass
class IngestPlan:
    """What a run will do, known after chunking and before embedding."""

    documents: list[PlannedDocument] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    prune: list[str] = field(default_factory=list)
    engine: str = ""  # how passages are embedded, e.g. "local model, 2 processes"
    rate: float | None = None  # chunks per second, measured or assumed
    measured_on: int = 0  # chunks the rate was measured on (0: assumed)

    @property
    def chunks(self) -> int:
        return sum(len(p.chunks) for p in self.documents)

    @property
    def tokens(self) -> int:
        return sum(c.token_count for p in self.documents for c in p.chunks)

    @property
    def seconds(self) -> float | None:
        """Estimated embedding time left (None when there is no rate): the chunks it was measured
        on are embedded already."""
        if not self.chunks:
            return 0.0
        return max(self.chunks - self.measured_on, 0) / self.rate if self.rate else None

    def estimate(self) -> str:
        seconds = self.seconds
        if seconds is None:
            return "time unknown"
        if not self.measured_on:
            how = f"assuming {self.rate:.0f} chunks/s for {self.engine}"
        else:
            how = f"{self.engine}, {self.rate:.1f} chunks/s measured on the first {self.measured_on} chunks"
        return f"about {format_duration(seconds)} ({how})"

    def headline(self) -> str:
        """One line: what will be embedded, what is skipped, and how long it will take."""
        new = sum(p.is_new for p in self.documents)
        parts = [f"{new} new", f"{len(self.documents) - new} changed", f"{len(self.unchanged)} unchanged"]
        if self.failed:
            parts.append(f"{len(self.failed)} failed")
        if self.prune:
            parts.append(f"{len(self.prune)} to prune")
        line = f"Plan: {len(self.documents)} documents to embed ({', '.join(parts)})"
        if self.documents:
            line += f"; {self.chunks:,} chunks ({self.tokens:,} tokens), {self.estimate()}"
        return line

    def details(self) -> list[str]:
        """Every document and what would happen to it (for --dry-run)."""
        rows = [f"  {'add' if p.is_new else 'replace':<8} {p.doc.source} ({len(p.chunks)} chunks)"
                for p in self.documents]
        rows += [f"  {'skip':<8} {source} (unchanged)" for source in self.unchanged]
        rows += [f"  {'prune':<8} {source} (file is gone)" for source in self.prune]
        rows += [f"  {'fail':<8} {source}: {reason}" for source, reason in self.failed]
        return rows


@dataclass
class IngestReport:
    """What one run did, document by document."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (source, one-line reason)
    pruned: list[str] = field(default_factory=list)
    chunks: int = 0
    seconds: float = 0.0
    plan: IngestPlan | None = None
    cancelled: bool = False  # the plan was shown and declined (or a dry run): nothing written
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        if self.cancelled:
            return f"Ingest: nothing written ({'dry run' if self.dry_run else 'cancelled'})"
        parts = [f"{len(self.added)} added", f"{len(self.updated)} updated", f"{len(self.unchanged)} unchanged"]
        if self.pruned:
            parts.append(f"{len(self.pruned)} pruned")
        parts.append(f"{len(self.failed)} failed")
        return f"Ingest: {', '.join(parts)}; {self.chunks} chunks embedded in {self.seconds:.1f} s"


class IngestInterrupted(KeyboardInterrupt):
    """Ctrl-C during an ingest; `report` holds the documents written completely before it."""

    def __init__(self, report: IngestReport) -> None:
        super().__init__("ingest interrupted")
        self.report = report


class Progress:
    """A one-line progress bar with rate and ETA on a terminal; sparse log lines otherwise.

    `already` rows (embedded before the bar started, e.g. while measuring the speed) count as
    done but not towards the rate.
    """

    def __init__(self, total: int, label: str = "embedding", stream: TextIO | None = None,
                 already: int = 0) -> None:
        self.total, self.label, self.done, self.already = total, label, already, already
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.start = self.last = time.monotonic()
        self.open = False  # a bar is on screen without its newline

    def advance(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.tty or now - self.last >= 5 or self.done >= self.total:
            self.last = now
            self._draw(now)

    def break_line(self) -> None:
        """End the bar's line, so that the next message starts on its own line."""
        if self.open:
            self.stream.write("\n")
            self.stream.flush()
            self.open = False

    def _draw(self, now: float) -> None:
        elapsed = max(now - self.start, 1e-6)
        rate = (self.done - self.already) / elapsed
        left = (self.total - self.done) / rate if rate > 0 else 0.0
        frac = self.done / self.total if self.total else 1.0
        bar = "#" * int(frac * 24)
        line = (f"{self.label} [{bar:<24}] {self.done}/{self.total} chunks"
                f" {rate:.1f}/s ETA {format_duration(left)}")
        if self.tty:
            end = self.done >= self.total
            self.open = True  # before writing: Ctrl-C may land in the write, and then needs a newline
            self.stream.write("\r" + line + ("\n" if end else ""))
            self.open = not end
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def format_duration(s: float) -> str:
    """42s, 3m05s, 2h07m."""
    s = round(s)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"




def discover(paths: Iterable[str | Path], skipped: Counter[str] | None = None
             ) -> tuple[list[Path], list[tuple[str, str]]]:
    """Expand folders (recursively, skipping hidden ones) into supported files, once each.

    Explicitly named files keep their suffix check in the loader so an unknown type is reported;
    files of other types inside folders are left out silently, counted by suffix in `skipped`.
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
                    if name.startswith("."):
                        continue
                    suffix = Path(name).suffix.lower()
                    if suffix in SUPPORTED_SUFFIXES:
                        add(Path(root) / name)
                    elif skipped is not None:
                        skipped[suffix or "(no suffix)"] += 1
        elif p.is_file():
            add(p)
        elif p.exists():
            problems.append((str(p), "not a regular file"))
        else:
            problems.append((str(p), "no such file or folder"))
    return files, problems


def nothing_found_message(paths: Sequence[str | Path], skipped: Counter[str]) -> str:
    """One line for a run that found no supported file: what was there, and what is supported."""
    where = ", ".join(str(p) for p in paths)
    supported = " ".join(sorted(SUPPORTED_SUFFIXES))
    if not skipped:
        return f"no files to ingest in {where} (supported: {supported})"
    found = ", ".join(f"{n} {suffix}" for suffix, n in skipped.most_common(5))
    return f"no supported files in {where}: found only {found} (supported: {supported})"


Source = tuple[str, Callable[[], "LoadedDocument | None"]]  # (name, load): load() None = unchanged at origin


def load_sources(sources: Iterable[Source], report: IngestReport, say: Say) -> Iterator[LoadedDocument]:
    """Loaded documents of (name, load) pairs, e.g. files or crawled web pages; load() returns None
    when the origin says the document is unchanged (HTTP 304). A document that cannot be loaded is
    recorded in `report` with one line and skipped."""
    for name, load in sources:
        try:
            doc = load()
        except IngestError as err:
            reason = _without_path(str(err), name)
            report.failed.append((name, reason))
            say(f"skipped {name}: {reason}")
            continue
        except OSError as err:
            report.failed.append((name, f"cannot read: {err.strerror}"))
            say(f"skipped {name}: cannot read ({err.strerror})")
            continue
        if doc is None:
            report.unchanged.append(name)
            continue
        yield doc


def _without_path(message: str, name: str) -> str:
    """An IngestError's reason without the file name or URL it starts with (the report names it)."""
    base = name.rstrip("/").rsplit("/", 1)[-1]
    for prefix in (f"{name}: ", f"{base}: "):
        if message.startswith(prefix):
            return message[len(prefix):]
    return message


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
            reason = _without_path(str(err), doc.source)
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


def missing_sources(store: Store, paths: Sequence[str | Path]) -> list[str]:
    """Documents under the given files or folders whose files no longer exist."""
    roots = [Path(p).expanduser().resolve() for p in paths]
    gone = []
    for source in store.sources():
        if "://" in source:
            continue
        path = Path(source)
        if any(path == r or r in path.parents for r in roots) and not path.exists():
            gone.append(source)
    return gone


def prune_missing(store: Store, paths: Sequence[str | Path]) -> list[str]:
    """Delete documents under the given folders whose files no longer exist."""
    gone = missing_sources(store, paths)
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
