"""The ingest plan: chunk count and time estimate before embedding, confirmation on a terminal,
--yes, --dry-run, Ctrl-C (during the question and during embedding), and the bad input a user
meets (a large text file, an empty folder, a folder of unsupported files).

The command line runs as a user runs it: a real process, real PostgreSQL, the local model, and for
the terminal cases a real pseudo-terminal (tests/fakes/terminal.py).
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import psutil
import psycopg
import pytest

from assistant.retrieval.embedders import make_embedder
from assistant.retrieval.ingest import IngestPlan, ingest_documents, ingest_paths
from assistant.retrieval.loaders import load_html
from assistant.retrieval.store import Store
from tests.conftest import ROOT
from tests.fakes.terminal import Terminal
from tests.test_ingest_batching import RecordingEmbedder
from tests.test_ingest_cli import run_cli


def write_docs(folder: Path, sizes: Sequence[int]) -> list[Path]:
    """Markdown files with `sizes[i]` short sections each (one chunk per section)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, sections in enumerate(sizes):
        body = "\n\n".join(f"## Part {k}\n\nFile {i} part {k} says something distinct about topic {i * 100 + k}."
                           for k in range(sections))
        path = folder / f"doc{i}.md"
        path.write_text(f"# Document {i}\n\n{body}\n")
        paths.append(path)
    return paths


def cli_env(database_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("DATABASE_URL", "EMBEDDING_", "OPENAI_", "HF_", "INGEST_"))}
    return {**base, "DATABASE_URL": database_url, "ASSISTANT_DATA_DIR": str(tmp_path / "d"),
            "PYTHONUNBUFFERED": "1", **extra}


def stored(database_url: str) -> dict[str, tuple[int, int]]:
    """source -> (chunk_count recorded with the document, chunk rows actually there)."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT d.source, d.chunk_count, count(c.id) FROM documents d"
                            " LEFT JOIN chunks c ON c.document_id = d.id GROUP BY d.id").fetchall()
    return {Path(source).name: (recorded, present) for source, recorded, present in rows}


@pytest.fixture
def store(settings):
    s = Store.open(settings, announce=False)
    yield s
    s.close()


# -- the plan, in-process ------------------------------------------------------------------------


def test_the_plan_comes_after_chunking_and_before_any_write(store, settings, tmp_path):
    write_docs(tmp_path / "docs", [3, 2, 4])
    seen: list[IngestPlan] = []
    log: list[str] = []

    def decline(plan: IngestPlan) -> bool:
        seen.append(plan)
        assert store.document_count() == 0  # asked before anything is written
        return False

    embedder = RecordingEmbedder()
    settings = dataclasses.replace(settings, embedding_batch_size=4)
    report = ingest_paths([tmp_path / "docs"], store, embedder, settings, progress=False, log=log.append,
                          confirm=decline)
    plan = seen[0]
    assert plan.chunks == 9 and len(plan.documents) == 3 and all(p.is_new for p in plan.documents)
    assert plan.measured_on == 4 and plan.rate and plan.seconds is not None  # measured on the first batch
    assert report.cancelled and store.document_count() == 0 and "nothing written (cancelled)" in report.summary()
    assert [len(b) for b in embedder.batches] == [4]  # only the measuring batch was embedded
    assert any(line.startswith("Plan: 3 documents to embed (3 new, 0 changed, 0 unchanged); 9 chunks")
               for line in log), log


def test_the_measured_batch_is_kept_not_embedded_twice(store, settings, tmp_path):
    write_docs(tmp_path / "docs", [3, 2, 4])
    embedder = RecordingEmbedder()
    settings = dataclasses.replace(settings, embedding_batch_size=4)
    report = ingest_paths([tmp_path / "docs"], store, embedder, settings, progress=False, log=lambda _: None,
                          confirm=lambda plan: True)
    assert report.ok and report.chunks == 9
    assert [len(b) for b in embedder.batches] == [4, 4, 1]
    assert sum(len(b) for b in embedder.batches) == 9


def test_remote_providers_get_an_assumed_rate_and_embed_nothing_before_the_answer(store, settings, tmp_path,
                                                                                 embedding_server):
    write_docs(tmp_path / "docs", [2, 2])
    hf = embedding_server.settings("hf", database_url=settings.database_url, data_dir=settings.data_dir)
    plans: list[IngestPlan] = []
    ingest_paths([tmp_path / "docs"], store, make_embedder(hf), hf, progress=False, log=lambda _: None,
                 confirm=lambda plan: plans.append(plan) or False)
    assert plans[0].measured_on == 0 and plans[0].rate == 20.0
    assert "assuming 20 chunks/s for hf provider" in plans[0].headline()
    assert embedding_server.requests == []  # a trial request would spend the user's credit


def test_dry_run_lists_add_replace_skip_prune_and_writes_nothing(store, settings, tmp_path):
    docs = tmp_path / "docs"
    paths = write_docs(docs, [2, 2, 2, 1])
    embedder = RecordingEmbedder()
    ingest_paths([docs], store, embedder, settings, progress=False, log=lambda _: None)
    paths[0].write_text(paths[0].read_text() + "\n## New part\n\nA change.\n")
    paths[1].unlink()
    (docs / "new.md").write_text("# New\n\nA new file.\n")
    before = store.status()
    report = ingest_paths([docs], store, embedder, settings, prune=True, progress=False, log=lambda _: None,
                          dry_run=True)
    assert report.cancelled and report.dry_run and "nothing written (dry run)" in report.summary()
    assert store.status()["chunks"] == before["chunks"] and store.document_count() == 4
    lines = report.plan.details() if report.plan else []
    actions = {line.split()[1].rsplit("/", 1)[-1].rstrip(":"): line.split()[0] for line in lines}
    assert actions == {"doc0.md": "replace", "new.md": "add", "doc2.md": "skip", "doc3.md": "skip",
                       "doc1.md": "prune"}, lines
    assert "1 new, 1 changed, 2 unchanged, 1 to prune" in report.plan.headline()


def test_loaded_documents_from_any_source_go_through_the_same_pipeline(store, settings):
    page = load_html(b"<html><head><title>Remote page</title></head><body><main><h1>Remote page</h1>"
                     b"<p>Fetched pages are ingested like files.</p></main></body></html>",
                     "https://docs.example/guide/page.html")
    embedder = RecordingEmbedder()
    report = ingest_documents([page], store, embedder, settings, progress=False, log=lambda _: None)
    assert report.added == ["https://docs.example/guide/page.html"] and report.plan and report.plan.chunks == 1
    again = ingest_documents([page], store, embedder, settings, progress=False, log=lambda _: None)
    assert again.unchanged == ["https://docs.example/guide/page.html"] and again.chunks == 0


@pytest.mark.slow
def test_worker_processes_store_the_same_vectors_as_in_process(settings, tmp_path, create_database):
    """INGEST_WORKERS=2 (a process per core, batch call) against the in-process path: same rows."""
    write_docs(tmp_path / "docs", [5, 1, 7, 3])  # 16 chunks: the measuring batches and more
    results = []
    for workers in (1, 2):
        s = dataclasses.replace(settings, database_url=create_database())
        store = Store.open(s, announce=False)
        try:
            report = ingest_paths([tmp_path / "docs"], store, make_embedder(s), s, progress=False,
                                  log=lambda _: None, workers=workers)
            assert report.ok and report.chunks == 16
            assert report.plan and report.plan.engine == ("local model, 2 processes" if workers == 2
                                                          else "local model, 1 process")
            with store.connection() as conn:
                results.append(conn.execute("SELECT d.source, c.ordinal, c.embedding FROM chunks c"
                                            " JOIN documents d ON d.id = c.document_id"
                                            " ORDER BY d.source, c.ordinal").fetchall())
        finally:
            store.close()
    one, two = results
    assert [(s, o) for s, o, _ in one] == [(s, o) for s, o, _ in two]
    for (_, _, a), (_, _, b) in zip(one, two, strict=True):
        assert float(a.to_numpy() @ b.to_numpy()) > 0.999  # batching may change the last float bits


# -- the command line: non-interactive ----------------------------------------------------------


@pytest.mark.slow
def test_cli_prints_the_plan_and_goes_ahead_without_a_terminal(database_url, tmp_path):
    write_docs(tmp_path / "docs", [3, 3])
    env = cli_env(database_url, tmp_path, INGEST_CONFIRM_MINUTES="0.0001", INGEST_WORKERS="1",
                  EMBEDDING_BATCH_SIZE="2")
    result = run_cli("ingest", str(tmp_path / "docs"), env=env)
    assert result.returncode == 0, result.stderr
    assert re.search(r"Plan: 2 documents to embed \(2 new, 0 changed, 0 unchanged\); 6 chunks \([\d,]+ tokens\),"
                     r" about \d+s \(local model, 1 process, [\d.]+ chunks/s measured on the first 2 chunks\)",
                     result.stderr), result.stderr
    assert "not a terminal, so going ahead" in result.stderr
    assert "2 added" in result.stdout and stored(database_url) == {"doc0.md": (3, 3), "doc1.md": (3, 3)}


@pytest.mark.slow
def test_cli_dry_run_prints_the_plan_on_stdout(database_url, tmp_path):
    write_docs(tmp_path / "docs", [2, 1])
    result = run_cli("ingest", str(tmp_path / "docs"), "--dry-run",
                     env=cli_env(database_url, tmp_path, INGEST_WORKERS="1"))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Plan: 2 documents to embed (2 new, 0 changed, 0 unchanged); 3 chunks")
    assert re.match(r"  add +\S+/doc0\.md \(2 chunks\)$", lines[1]) and re.match(r"  add +\S+/doc1\.md", lines[2])
    assert lines[-1] == "Ingest: nothing written (dry run)"
    assert stored(database_url) == {}


@pytest.mark.parametrize(("make", "needle"), [
    (lambda d: None, "no files to ingest in {d} (supported: "),
    (lambda d: [(d / f"t{i}.csv").write_text("a,b\n") for i in range(3)] + [(d / "x.docx").write_bytes(b"PK")],
     "no supported files in {d}: found only 3 .csv, 1 .docx (supported: "),
])
@pytest.mark.slow
def test_cli_empty_folder_and_unsupported_files_say_so_in_one_line(database_url, tmp_path, make, needle):
    folder = tmp_path / "folder"
    folder.mkdir()
    make(folder)
    result = run_cli("ingest", str(folder), env=cli_env(database_url, tmp_path))
    assert result.returncode == 1
    assert needle.format(d=folder) in result.stderr and "Traceback" not in result.stderr
    assert "Plan:" not in result.stderr


# -- the command line on a terminal -------------------------------------------------------------


def terminal(database_url: str, tmp_path: Path, *args: str, **extra: str) -> Terminal:
    return Terminal([sys.executable, "-m", "assistant", "ingest", *args], env=cli_env(database_url, tmp_path, **extra),
                    cwd=str(ROOT))


@pytest.mark.slow
def test_a_large_text_file_shows_the_estimate_and_asks_first(database_url, tmp_path):
    """A long text file (the 21 MB case, smaller here to keep the test short): the estimate is
    shown before any embedding and the terminal is asked; 'n' writes nothing."""
    paragraph = " ".join(f"word{i % 5000} and more text about item {i}." for i in range(60))
    big = tmp_path / "big.txt"
    big.write_text("\n\n".join(f"Section {n}. {paragraph}" for n in range(400)))  # ~1.3 MB
    term = terminal(database_url, tmp_path, str(big), INGEST_CONFIRM_MINUTES="0.05")
    try:
        m = term.expect(r"Plan: 1 documents to embed \(1 new.*?\); ([\d,]+) chunks .*?about (\S+) ")
        assert int(m.group(1).replace(",", "")) > 300
        term.expect(r"This will take about \S+ \(local model, \d+ process(es)?, .*\)\. Continue\? \[y/N\] ")
        term.type("n\n")
        assert term.wait() == 1
    finally:
        term.close()
    assert "Not started: nothing was written" in term.output and "Ingest: nothing written (cancelled)" in term.output
    assert "embedding [" not in term.output and "Traceback" not in term.output
    assert stored(database_url) == {}


@pytest.mark.slow
def test_yes_on_the_terminal_goes_ahead(database_url, tmp_path):
    write_docs(tmp_path / "docs", [3, 3])
    term = terminal(database_url, tmp_path, str(tmp_path / "docs"), "--yes", INGEST_CONFIRM_MINUTES="0.0001",
                    INGEST_WORKERS="1", EMBEDDING_BATCH_SIZE="2")
    try:
        assert term.wait(300) == 0
    finally:
        term.close()
    assert "Continue?" not in term.output and "2 added" in term.output
    assert stored(database_url) == {"doc0.md": (3, 3), "doc1.md": (3, 3)}


@pytest.mark.slow
def test_answering_yes_ingests(database_url, tmp_path):
    write_docs(tmp_path / "docs", [3, 3])
    term = terminal(database_url, tmp_path, str(tmp_path / "docs"), INGEST_CONFIRM_MINUTES="0.0001",
                    INGEST_WORKERS="1", EMBEDDING_BATCH_SIZE="2")
    try:
        term.expect(r"Continue\? \[y/N\] ")
        term.type("y\n")
        assert term.wait(300) == 0
    finally:
        term.close()
    bar = r"\[y/N\] y\n\rembedding \[#+ *\] \d/6 chunks.*\rembedding \[#+\] 6/6 chunks [^\n]*\nIngest: 2 added"
    assert re.search(bar, term.output), term.output
    assert stored(database_url) == {"doc0.md": (3, 3), "doc1.md": (3, 3)}


@pytest.mark.slow
def test_ctrl_c_at_the_question_writes_nothing_and_says_so_on_its_own_line(database_url, tmp_path):
    write_docs(tmp_path / "docs", [12, 12])  # more than the 2 x 8 chunks the speed is measured on
    term = terminal(database_url, tmp_path, str(tmp_path / "docs"), INGEST_CONFIRM_MINUTES="0.0001",
                    INGEST_WORKERS="2")
    try:
        term.expect(r"Continue\? \[y/N\] ")
        term.ctrl_c()
        assert term.wait() == 130
    finally:
        term.close()
    assert re.search(r"Continue\? \[y/N\] \ninterrupted: nothing was written; run the same command again",
                     term.output), term.output
    assert "Traceback" not in term.output and stored(database_url) == {}


@pytest.mark.slow
def test_ctrl_c_during_embedding_leaves_only_whole_documents_and_no_processes(database_url, tmp_path):
    write_docs(tmp_path / "docs", [12] * 8)  # 96 chunks: long enough to interrupt in the middle
    term = terminal(database_url, tmp_path, str(tmp_path / "docs"), "--yes", INGEST_WORKERS="2")
    try:
        term.expect(r"embedding \[#*\s*\] (\d+)/96 chunks")
        workers = psutil.Process(term.proc.pid).children(recursive=True)
        term.ctrl_c()
        code = term.wait()
    finally:
        term.close()
    out = term.output
    assert code == 130, out
    assert re.search(r"chunks [\d.]+/s ETA \S+\ninterrupted: (\d+ documents were written completely before it|"
                     r"nothing was written); run the same command again to finish", out), out
    assert "Traceback" not in out and "KeyboardInterrupt" not in out
    docs = stored(database_url)
    assert len(docs) < 8 and all(recorded == present == 12 for recorded, present in docs.values()), docs
    psutil.wait_procs(workers, timeout=10)
    assert not [p for p in workers if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    # And the next run finishes the job, skipping what was written.
    again = run_cli("ingest", str(tmp_path / "docs"), "--quiet", env=cli_env(database_url, tmp_path))
    assert again.returncode == 0 and f"{len(docs)} unchanged" in again.stdout
    assert len(stored(database_url)) == 8
