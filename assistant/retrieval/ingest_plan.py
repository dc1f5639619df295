"""What an ingest will do and did: the plan (chunks and time estimate, before any embedding), the
report (document by document), and the progress bar shown while embedding."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import TextIO

from assistant.retrieval.types import Chunk, LoadedDocument


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
