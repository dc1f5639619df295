"""`python -m assistant eval`: reading question files, matching expected sources, scoring hit@k and
MRR per mode against the real sample corpus, and the command line with good and bad input."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from assistant.retrieval.embedders import make_embedder
from assistant.retrieval.errors import AssistantError, EmbeddingError, QueryError
from assistant.retrieval.evaluate import (
    DEFAULT_KS,
    EvalQuestion,
    SourceIndex,
    evaluate,
    format_report,
    load_questions,
    parse_ks,
)
from assistant.retrieval.question_files import EvalInputError
from assistant.retrieval.search import Retriever
from assistant.retrieval.store import Store
from tests.conftest import ROOT, make_settings
from tests.test_ingest_cli import run_cli

EXAMPLE = ROOT / "examples" / "sample-eval.jsonl"


def write(tmp_path: Path, text: str, name: str = "q.jsonl") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def sample_retriever(sample_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Retriever]:
    s = make_settings(database_url=sample_database, data_dir=tmp_path_factory.mktemp("eval"))
    retriever = Retriever(Store.open(s, announce=False), make_embedder(s), s)
    yield retriever
    retriever.store.close()


# -- the questions file ---------------------------------------------------------------------------


def test_jsonl_lines_blank_lines_comments_and_spellings_of_expected(tmp_path):
    path = write(tmp_path, '# questions for the guide\n'
                 '{"question": "  How do I   deploy? ", "expected": "deploy-render.md"}\n\n'
                 '{"query": "Why 512 MB?", "sources": ["index.md", "faq.md"]}\n')
    assert load_questions(path) == [
        EvalQuestion(2, "How do I deploy?", ("deploy-render.md",)),
        EvalQuestion(4, "Why 512 MB?", ("index.md", "faq.md")),
    ]


def test_a_json_array_is_accepted_too(tmp_path):
    path = write(tmp_path, json.dumps([{"question": "q1", "expected": "a.md"}, {"question": "q2", "expected": "b"}]),
                 "q.json")
    assert [(q.line, q.expected) for q in load_questions(path)] == [(1, ("a.md",)), (2, ("b",))]


@pytest.mark.parametrize(("text", "message"), [
    ("", "no questions"),
    ("\n# only a comment\n\n", "no questions"),
    ('{"question": "ok", "expected": ["a.md"]}\n{"question": "broken", \n', "line 2: invalid JSON"),
    ('{"question": "no sources"}\n', 'line 1: no "expected" sources'),
    ('{"question": "empty", "expected": []}\n', 'line 1: no "expected" sources'),
    ('{"question": "", "expected": ["a.md"]}\n', 'line 1: no "question"'),
    ('{"question": "q", "expected": [3]}\n', '"expected" must hold non-empty strings'),
    ('7\n', "line 1: expected a JSON object"),
    ('"just a string"\n', "got a string"),
    ('[{"question": "q", "expected": "a"}, 7]', "item 2: expected a JSON object"),
    ("[{]", "line 1: invalid JSON"),
])
def test_malformed_input_names_the_line(tmp_path, text, message):
    with pytest.raises(EvalInputError, match=message) as err:
        load_questions(write(tmp_path, text))
    assert "\n" not in str(err.value)


def test_every_bad_line_is_found_before_failing(tmp_path):
    text = "\n".join(["{bad"] * 5 + ['{"question": "q", "expected": "a"}'])
    with pytest.raises(EvalInputError) as err:
        load_questions(write(tmp_path, text))
    assert "line 1:" in str(err.value) and "line 3:" in str(err.value) and "(and 2 more)" in str(err.value)


def test_missing_file_folder_and_binary_file(tmp_path):
    with pytest.raises(EvalInputError, match="no such file"):
        load_questions(tmp_path / "nope.jsonl")
    with pytest.raises(EvalInputError, match="is a folder"):
        load_questions(tmp_path)
    (tmp_path / "bin.jsonl").write_bytes(b"\xff\xfe\x00\x81binary")
    with pytest.raises(EvalInputError, match="not UTF-8"):
        load_questions(tmp_path / "bin.jsonl")


def test_k_cut_offs():
    assert parse_ks(None) == DEFAULT_KS
    assert parse_ks(["5"]) == (5,)
    assert parse_ks(["10,1", "3", "3"]) == (1, 3, 10)
    for bad in (["0"], ["101"], ["five"], [","]):
        with pytest.raises(QueryError):
            parse_ks(bad)


# -- matching expected sources ---------------------------------------------------------------------------


def test_source_spellings_resolve_to_the_stored_source(tmp_path, monkeypatch):
    docs = [
        {"source": "/srv/docs/guide/setup.md", "title": "Setting up", "url": None},
        {"source": "/srv/docs/other/setup.md", "title": "Other setup", "url": None},
        {"source": "/srv/docs/guide/faq.html", "title": "FAQ", "url": "https://example.com/faq"},
        {"source": "https://example.com/blog/post-1", "title": "Release notes", "url": "https://example.com/blog/post-1"},
    ]
    index = SourceIndex(docs)
    assert index.resolve("/srv/docs/guide/setup.md") == ["/srv/docs/guide/setup.md"]
    assert index.resolve("guide/setup.md") == ["/srv/docs/guide/setup.md"]
    assert index.resolve(".\\guide\\SETUP.md") == ["/srv/docs/guide/setup.md"]
    assert index.resolve("setup.md") == ["/srv/docs/guide/setup.md", "/srv/docs/other/setup.md"]
    assert index.resolve("guide/faq") == ["/srv/docs/guide/faq.html"]
    assert index.resolve("faq") == ["/srv/docs/guide/faq.html"]  # the stem before the title "FAQ"
    assert index.resolve("https://example.com/faq") == ["/srv/docs/guide/faq.html"]
    assert index.resolve("blog/post-1") == ["https://example.com/blog/post-1"]
    assert index.resolve("setting up") == ["/srv/docs/guide/setup.md"]
    assert index.resolve("tup.md") == [] and index.resolve("missing.md") == [] and index.resolve(" ") == []
    root = tmp_path.resolve()
    monkeypatch.chdir(root)  # a path relative to the working directory
    stored = (root / "notes" / "a.md").as_posix()
    assert SourceIndex([{"source": stored, "title": "A", "url": None}]).resolve("notes/../notes/a.md") == [stored]


# -- scoring against the sample corpus ------------------------------------------------------------------


@pytest.mark.slow
def test_the_shipped_example_is_answered_by_every_mode(sample_retriever):
    """The example file doubles as a regression check: each question's page is in the top 10 in
    every mode, and hybrid puts it in the top 3 (tuning must not make this worse)."""
    questions = load_questions(EXAMPLE)
    assert 15 <= len(questions) <= 25
    report = evaluate(sample_retriever, questions, path=str(EXAMPLE))
    assert report.warnings == []
    assert [m.mode for m in report.modes] == ["hybrid", "vector", "text"]
    for mode in report.modes:
        assert mode.misses == [], format_report(report)
        rates = [mode.hit_rate(k) for k in report.ks]
        assert rates == sorted(rates) and rates[-1] == 1.0
        assert mode.mrr == pytest.approx(np.mean([1 / r.rank for r in mode.results]))
    hybrid = report.modes[0]
    assert hybrid.hit_rate(3) == 1.0 and hybrid.mrr >= 0.9


def test_misses_unknown_sources_and_ranks(sample_retriever):
    questions = [
        EvalQuestion(1, "How do I deploy on Render?", ("deploy-render.md",)),
        EvalQuestion(2, "How do I deploy on Render?", ("faq.md",)),  # the wrong page: a miss at k=1
        EvalQuestion(3, "How do I deploy on Render?", ("no-such-page.md",)),
        EvalQuestion(4, "How do I deploy on Render?", ("Deploying to Render", "no-such-page.md")),
    ]
    report = evaluate(sample_retriever, questions, ks=[1], modes=["hybrid"])
    results = {r.question.line: r for r in report.modes[0].results}
    assert results[1].rank == 1 and results[4].rank == 1
    assert results[2].rank is None and results[3].rank is None
    assert results[2].first["source"].endswith("deploy-render.md") and results[2].first["similarity"] > 0.8
    assert [m.question.line for m in report.modes[0].misses] == [2, 3]
    assert report.modes[0].hit_rate(1) == 0.5 and report.modes[0].mrr == 0.5
    assert sum("no-such-page.md" in w and "not in the index" in w for w in report.warnings) == 2
    text = format_report(report)
    assert "hit@1" in text and "line 2: How do I deploy on Render?" in text and "expected: faq.md" in text
    data = report.to_dict()
    json.dumps(data)
    assert data["modes"]["hybrid"]["hit_at"] == {"1": 0.5}
    assert [q["ranks"]["hybrid"] for q in data["per_question"]] == [1, None, None, 1]


class BrokenEmbedder:
    provider, model, dim = "local", "intfloat/multilingual-e5-small", 384

    def embed_query(self, text: str) -> np.ndarray:
        raise EmbeddingError("Hugging Face API unavailable (503)", retryable=True)


def test_a_failing_embedder_is_reported_not_hidden(sample_retriever):
    broken = Retriever(sample_retriever.store, BrokenEmbedder(), sample_retriever.settings)  # type: ignore[arg-type]
    report = evaluate(broken, [EvalQuestion(1, "deploy on render", ("deploy-render.md",))], modes=["vector"])
    assert report.modes[0].degraded == 1
    assert any("fell back to full-text" in w for w in report.warnings)


def test_no_documents_is_a_clear_error(database_url, tmp_path):
    s = make_settings(database_url=database_url, data_dir=tmp_path)
    retriever = Retriever(Store.open(s, announce=False), make_embedder(s), s)
    try:
        with pytest.raises(AssistantError, match="no documents"):
            evaluate(retriever, [EvalQuestion(1, "anything", ("a.md",))])
    finally:
        retriever.store.close()


# -- the command line --------------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_json_output(sample_database, tmp_path):
    path = write(tmp_path, '{"question": "How do I deploy on Render?", "expected": ["deploy-render.md"]}\n'
                 '{"question": "Which languages are supported?", "expected": ["typo-faq.md"]}\n')
    env = {"DATABASE_URL": sample_database, "ASSISTANT_DATA_DIR": str(tmp_path)}
    result = run_cli("eval", str(path), "--json", "--k", "1,5", "--mode", "hybrid", env=env)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["questions"] == 2 and data["k"] == [1, 5] and list(data["modes"]) == ["hybrid"]
    assert data["modes"]["hybrid"]["hit_at"] == {"1": 0.5, "5": 0.5}
    assert data["modes"]["hybrid"]["misses"][0]["line"] == 2
    assert any("typo-faq.md" in w for w in data["warnings"])


@pytest.mark.slow
def test_cli_table_and_bad_input(sample_database, tmp_path):
    env = {"DATABASE_URL": sample_database, "ASSISTANT_DATA_DIR": str(tmp_path)}
    ok = run_cli("eval", str(EXAMPLE), "--k", "3", env=env)
    assert ok.returncode == 0, ok.stderr
    assert "hit@3" in ok.stdout and all(mode in ok.stdout for mode in ("hybrid", "vector", "text"))
    bad = run_cli("eval", str(write(tmp_path, '{"question": "q"}\n')), env=env)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and "line 1" in bad.stderr
    assert "Traceback" not in bad.stderr
    missing = run_cli("eval", str(tmp_path / "absent.jsonl"), env=env)
    assert missing.returncode == 2 and "no such file" in missing.stderr


# -- off-topic questions and languages -----------------------------------------------------------------


def test_off_topic_lines_and_languages_are_read(tmp_path):
    path = write(tmp_path, '{"question": "q1", "expected": ["a.md"], "lang": "de"}\n'
                 '{"question": "bake bread", "expected": [], "kind": "off_topic"}\n'
                 '{"question": "paella", "kind": "off_topic", "lang": "es"}\n')
    qs = load_questions(path)
    assert [(q.kind, q.lang, q.expected) for q in qs] == [
        ("answerable", "de", ("a.md",)), ("off_topic", None, ()), ("off_topic", "es", ())]


@pytest.mark.parametrize(("text", "message"), [
    ('{"question": "q", "expected": ["a.md"], "kind": "off_topic"}\n', 'write "expected": []'),
    ('{"question": "q", "expected": ["a.md"], "kind": "maybe"}\n', '"kind" must be'),
    ('{"question": "q", "expected": ["a.md"], "lang": 3}\n', '"lang" must be'),
    ('{"question": "q", "expected": []}\n', '"kind": "off_topic"'),
])
def test_bad_off_topic_and_language_lines(tmp_path, text, message):
    with pytest.raises(EvalInputError, match=re.escape(message)):
        load_questions(write(tmp_path, text))


def test_off_topic_rejected_and_answerable_kept_are_counted(sample_retriever):
    questions = [
        EvalQuestion(1, "How do I deploy on Render?", ("deploy-render.md",), lang="en"),
        EvalQuestion(2, "Wie binde ich den Chat als Widget in meine Webseite ein?", ("embeddable-widget.md",),
                     lang="de"),
        EvalQuestion(3, "How do I bake sourdough bread?", (), kind="off_topic"),
        EvalQuestion(4, "Wie hoch ist der Mount Everest?", (), kind="off_topic", lang="de"),
    ]
    report = evaluate(sample_retriever, questions, ks=[1, 5], modes=["hybrid"])
    hybrid = report.modes[0]
    assert len(hybrid.answerable) == 2 and hybrid.accepted == 2 and hybrid.rejected == 2
    assert hybrid.hit_rate(5) == 1.0 and hybrid.languages == ["de", "en"]
    data = report.to_dict()["modes"]["hybrid"]
    assert data["relevance"] == {"answerable": 2, "answerable_accepted": 2, "off_topic": 2, "off_topic_rejected": 2}
    assert set(data["by_lang"]) == {"de", "en"}
    text = format_report(report)
    assert "off-topic rejected" in text and "2/2" in text and "per language" in text
