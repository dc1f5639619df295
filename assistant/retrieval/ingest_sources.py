"""Where an ingest's documents come from: files and folders on disk (`discover`), any (name, load)
`Source` such as crawled pages (`load_sources`), and the indexed files that are gone (`missing_sources`)."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from assistant.retrieval.errors import IngestError
from assistant.retrieval.ingest_plan import IngestReport
from assistant.retrieval.loaders import SUPPORTED_SUFFIXES
from assistant.retrieval.types import LoadedDocument

if TYPE_CHECKING:
    from assistant.retrieval.store import Store

Say = Callable[[str], None]


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


# A source of one document, a file or a crawled page: (name, load); load() gives the document, None when
# the origin says it is unchanged (HTTP 304), or raises IngestError with the one-line reason.
Source = tuple[str, Callable[[], "LoadedDocument | None"]]


def load_sources(sources: Iterable[Source], report: IngestReport, say: Say) -> Iterator[LoadedDocument]:
    """Loaded documents of (name, load) pairs, e.g. files or crawled web pages; load() returns None
    when the origin says the document is unchanged (HTTP 304). A document that cannot be loaded is
    recorded in `report` with one line and skipped."""
    for name, load in sources:
        try:
            doc = load()
        except IngestError as err:
            reason = without_path(str(err), name)
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


def without_path(message: str, name: str) -> str:
    """An IngestError's reason without the file name or URL it starts with (the report names it)."""
    base = name.rstrip("/").rsplit("/", 1)[-1]
    for prefix in (f"{name}: ", f"{base}: "):
        if message.startswith(prefix):
            return message[len(prefix):]
    return message


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
