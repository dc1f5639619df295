"""Ingestion and the command line end to end: real files, real PostgreSQL, the local embedder,
and `python -m assistant` run as a user would run it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from assistant.retrieval.embedders import make_embedder
from assistant.retrieval.ingest import discover, ingest_paths
from assistant.retrieval.search import Retriever
from assistant.retrieval.store import Store
from tests.conftest import ROOT, make_settings
from tests.fakes.documents import make_pdf

QUESTIONS = json.loads((ROOT / "tests" / "data" / "sample_questions.json").read_text())


def run_cli(*args: str, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "EMBEDDING_", "OPENAI_", "HF_"))}
    return subprocess.run([sys.executable, "-m", "assistant", *args], cwd=ROOT, env={**base, **env},
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    (root / "guide").mkdir(parents=True)
    (root / "guide" / "backup.md").write_text(
        "---\ntitle: Backups\nurl: https://docs.example/backup\ntags: [ops, faq]\n---\n"
        "# Backups\n\n## Restoring\n\nTo restore a backup, stop the service and run `restore --latest`.\n\n"
        "## Schedule\n\nBackups run every night at 02:00 UTC and are kept for 35 days.\n")
    (root / "guide" / "page.html").write_text(
        "<html><head><title>Billing</title><script>alert('x')</script></head><body><nav>Home | Docs</nav>"
        "<h1>Billing</h1><p>Invoices are sent on the first working day of each month.</p></body></html>")
    (root / "notes.txt").write_bytes("Caf\xe9 opening hours are 8 to 18 on weekdays.".encode("cp1252"))
    (root / "manual.pdf").write_bytes(make_pdf([["The red lever resets the pump."],
                                                ["Replace the filter every 90 days."]]))
    (root / "empty.md").write_text("")
    (root / "binary.txt").write_bytes(b"\x00\x01\x02 not text \x00" * 50)
    (root / "broken.pdf").write_bytes(b"%PDF-1.7 garbage that is not a pdf")
    (root / ".hidden").mkdir()
    (root / ".hidden" / "secret.md").write_text("# Secret\n\nnever indexed")
    return root


@pytest.fixture
def store(settings):
    s = Store.open(settings, announce=False)
    yield s
    s.close()


@pytest.mark.slow
def test_ingest_a_mixed_folder(docs, store, settings):
    embedder = make_embedder(settings)
    log: list[str] = []
    unknown = docs / "data.csv"
    unknown.write_text("a,b\n1,2\n")
    report = ingest_paths([docs, docs / "notes.txt", unknown], store, embedder, settings, progress=False,
                          log=log.append)
    assert sorted(Path(p).name for p in report.added) == ["backup.md", "manual.pdf", "notes.txt", "page.html"]
    failed = {Path(p).name: reason for p, reason in report.failed}
    assert set(failed) == {"empty.md", "binary.txt", "broken.pdf", "data.csv"}
    assert all("\n" not in r for r in failed.values())
    assert not report.ok and "4 added" in report.summary() and "4 failed" in report.summary()

    retriever = Retriever(store, embedder, settings)
    hit = retriever.search("how long are backups kept?", k=1).hits[0]
    assert hit.title == "Backups" and hit.url == "https://docs.example/backup" and hit.heading_path[-1] == "Schedule"
    pdf = retriever.search("how often should the filter be replaced", k=1).hits[0]
    assert pdf.source.endswith("manual.pdf") and pdf.page == 2
    html = retriever.search("when are invoices sent", k=1).hits[0]
    assert html.title == "Billing" and "alert" not in html.text and "Home | Docs" not in html.text
    assert retriever.search("café opening hours", k=1).hits[0].source.endswith("notes.txt")
    assert retriever.search("backups", k=5, filters=["tag=ops"]).hits[0].title == "Backups"
    assert "Secret" not in {h.title for h in retriever.search("secret", k=10).hits}


@pytest.mark.slow
def test_unchanged_changed_and_pruned(docs, store, settings):
    embedder = make_embedder(settings)
    for bad in ("empty.md", "binary.txt", "broken.pdf"):
        (docs / bad).unlink()
    first = ingest_paths([docs], store, embedder, settings, progress=False, log=lambda _: None)
    assert len(first.added) == 4 and first.ok

    again = ingest_paths([docs], store, embedder, settings, progress=False, log=lambda _: None)
    assert len(again.unchanged) == 4 and again.chunks == 0 and not again.added

    page = docs / "guide" / "backup.md"
    page.write_text(page.read_text().replace("35 days", "90 days"))
    (docs / "notes.txt").unlink()
    changed = ingest_paths([docs], store, embedder, settings, prune=True, progress=False, log=lambda _: None)
    assert [Path(p).name for p in changed.updated] == ["backup.md"]
    assert [Path(p).name for p in changed.pruned] == ["notes.txt"]
    retriever = Retriever(store, embedder, settings)
    texts = [h.text for h in retriever.search("how long are backups kept", k=10, filters=["tag=faq"]).hits]
    assert any("90 days" in t for t in texts) and not any("35 days" in t for t in texts)
    assert store.document_count() == 3


def test_the_same_file_twice_is_ingested_once(docs, store, settings):
    md = docs / "guide" / "backup.md"
    report = ingest_paths([md, md, docs / "guide" / ".." / "guide" / "backup.md"], store, make_embedder(settings),
                          settings, progress=False, log=lambda _: None)
    assert len(report.added) == 1 and store.document_count() == 1
    files, problems = discover([md, docs / "missing.md"])
    assert files == [md.resolve()] and problems == [(str(docs / "missing.md"), "no such file or folder")]


def test_embedder_down_stops_the_run_and_writes_nothing(docs, store, settings, embedding_server):
    embedding_server.script(("status", 401))
    hf = embedding_server.settings("hf", database_url=settings.database_url, data_dir=settings.data_dir)
    report = ingest_paths([docs], store, make_embedder(hf), hf, progress=False, log=lambda _: None)
    assert not report.added and store.document_count() == 0
    reasons = [r for _, r in report.failed]
    assert any("HUGGINGFACE_TOKEN" in r for r in reasons)
    assert any("not attempted" in r for r in reasons)
    assert len(embedding_server.requests) == 1  # 401 is final: no retries, no other files tried


@pytest.mark.slow
def test_cli_ingest_exit_code_and_summary(docs, database_url, tmp_path):
    env = {"DATABASE_URL": database_url, "ASSISTANT_DATA_DIR": str(tmp_path / "d")}
    result = run_cli("ingest", str(docs), "--quiet", env=env)
    assert result.returncode == 1, result.stderr
    assert "4 added" in result.stdout and "3 failed" in result.stdout
    assert "Traceback" not in result.stderr
    for bad in ("empty.md", "binary.txt", "broken.pdf"):
        (docs / bad).unlink()
    again = run_cli("ingest", str(docs), "--quiet", env=env)
    assert again.returncode == 0 and "4 unchanged" in again.stdout


@pytest.mark.slow
def test_cli_search_json_and_text(sample_database, tmp_path):
    env = {"DATABASE_URL": sample_database, "ASSISTANT_DATA_DIR": str(tmp_path)}
    result = run_cli("search", "How do I deploy on Render?", "-k", "3", "--json", env=env)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data) >= {"query", "mode", "degraded", "timings_ms", "hits"}
    assert data["mode"] == "hybrid" and data["degraded"] is False and len(data["hits"]) == 3
    hit = data["hits"][0]
    assert set(hit) >= {"rank", "score", "title", "source", "heading", "page", "text", "vector_rank", "similarity"}
    assert hit["source"].endswith("deploy-render.md")
    assert {"embed_ms", "search_ms", "total_ms"} <= set(data["timings_ms"])

    text = run_cli("search", "render free plan memory", "--mode", "text", "-k", "2", env=env)
    assert text.returncode == 0 and "text #1" in text.stdout and "time: " in text.stdout

    status = run_cli("db", "status", env=env)
    assert status.returncode == 0 and "intfloat/multilingual-e5-small (384 dims)" in status.stdout
    assert "hnsw index:      m=16" in status.stdout


@pytest.mark.parametrize(("args", "needle"), [
    (["search", "   "], "empty"),
    (["search", "x", "--filter", "colour=red"], "Unknown filter key"),
    (["search", "x", "--filter", "noequals"], "key=value"),
])
@pytest.mark.slow
def test_cli_bad_input_is_one_line(sample_database, tmp_path, args, needle):
    result = run_cli(*args, env={"DATABASE_URL": sample_database, "ASSISTANT_DATA_DIR": str(tmp_path)})
    assert result.returncode == 2
    assert needle in result.stderr and "Traceback" not in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.startswith("error:")]) == 1


@pytest.mark.slow
def test_cli_unreachable_database(tmp_path):
    result = run_cli("search", "hello", env={"DATABASE_URL": "postgresql://u@127.0.0.1:9/none",
                                             "DB_CONNECT_TIMEOUT": "2"}, timeout=30)
    assert result.returncode == 1
    assert "Cannot reach PostgreSQL at 127.0.0.1:9/none" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_retrieval_package_runs_without_the_chat_stack(sample_database, tmp_path):
    """`assistant.retrieval` and `search` must work where chainlit/openai/tiktoken are not installed."""
    script = (
        "import sys, runpy\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('chainlit', 'openai', 'tiktoken', 'tiktoken_ext', 'torch'):\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import assistant.retrieval, assistant.retrieval.search, assistant.retrieval.ingest\n"
        "sys.argv = ['assistant', 'search', 'pgvector on render', '--json']\n"
        "try:\n"
        "    runpy.run_module('assistant', run_name='__main__')\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('chainlit', 'openai', 'tiktoken')]\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={**env, "DATABASE_URL": sample_database, "ASSISTANT_DATA_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["hits"]


@pytest.mark.parametrize("case", QUESTIONS, ids=[q["expected"] + ":" + q["question"][:30] for q in QUESTIONS])
def test_sample_questions_find_their_page_in_the_top_3(sample_database, case, tmp_path):
    retriever = _sample_retriever(sample_database, tmp_path)
    hits = retriever.search(case["question"], k=3, mode="hybrid").hits
    assert case["expected"] in [Path(h.source).name for h in hits], [(h.source, h.score) for h in hits]


_RETRIEVERS: dict[str, Retriever] = {}


def _sample_retriever(url: str, tmp_path: Path) -> Retriever:
    if url not in _RETRIEVERS:
        s = make_settings(database_url=url, data_dir=tmp_path)
        _RETRIEVERS[url] = Retriever(Store.open(s, announce=False), make_embedder(s), s)
    return _RETRIEVERS[url]


@pytest.mark.slow
def test_sample_corpus_is_indexed_on_first_search_and_only_then(database_url, tmp_path):
    env = {"DATABASE_URL": database_url, "ASSISTANT_DATA_DIR": str(tmp_path), "ASSISTANT_SAMPLE_DOCS": "0"}
    off = run_cli("search", "deploy", "--json", env=env)
    assert off.returncode == 0 and json.loads(off.stdout)["hits"] == []
    ingest = run_cli("ingest", str(tmp_path / "nothing-here"), env=env)
    assert ingest.returncode == 1 and "no such file" in ingest.stdout + ingest.stderr
    env["ASSISTANT_SAMPLE_DOCS"] = "1"
    on = run_cli("search", "deploy on render", "-k", "1", env=env)
    assert on.returncode == 0 and "indexing the built-in sample corpus" in on.stderr
    assert "deploy-render.md" in on.stdout
