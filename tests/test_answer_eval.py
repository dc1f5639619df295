"""`python -m assistant eval --answers`: questions and conversations through the chat pipeline,
first-citation accuracy beside retrieval hit@1, on the real sample corpus and from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from assistant.chat.answer_eval import (
    AnswerQuestion,
    evaluate_answers,
    format_answer_report,
    load_answer_questions,
)
from assistant.chat.pipeline import ChatPipeline
from assistant.retrieval.embedders import make_embedder
from assistant.retrieval.question_files import EvalInputError
from assistant.retrieval.search import Retriever
from assistant.retrieval.store import Store
from tests.conftest import ROOT, make_settings
from tests.test_ingest_cli import run_cli

FOLLOW_UPS = ROOT / "examples" / "sample-followups.jsonl"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "q.jsonl"
    path.write_text(text, encoding="utf-8")
    return path


def test_questions_and_conversations_are_read(tmp_path: Path) -> None:
    path = write(tmp_path, '# a comment\n{"question": " How do I  deploy? ", "expected": "deploy-render.md"}\n\n'
                 '{"turns": ["How do I deploy on Render?", "and how much memory?"], "expected": ["deploy-render"]}\n')
    assert load_answer_questions(path) == [
        AnswerQuestion(2, "How do I deploy?", ("deploy-render.md",)),
        AnswerQuestion(4, "and how much memory?", ("deploy-render",), ("How do I deploy on Render?",)),
    ]
    assert len(load_answer_questions(FOLLOW_UPS)) >= 15


@pytest.mark.parametrize(("text", "message"), [
    ('{"turns": [], "expected": ["a.md"]}', "line 1"),
    ('{"turns": ["q", 3], "expected": ["a.md"]}', "turns"),
    ('{"question": "q"}', "expected"),
    ("not json", "invalid JSON"),
    ("", "no questions"),
])
def test_bad_lines_name_the_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(EvalInputError, match=message):
        load_answer_questions(write(tmp_path, text))


@pytest.mark.asyncio
async def test_the_follow_up_set_keeps_the_topic(sample_database: str, tmp_path: Path) -> None:
    settings = make_settings(database_url=sample_database, data_dir=tmp_path)
    retriever = Retriever(Store.open(settings, announce=False), make_embedder(settings), settings)
    pipeline = ChatPipeline(retriever, settings, titles=retriever.store)
    try:
        report = await evaluate_answers(pipeline, load_answer_questions(FOLLOW_UPS)[:3], path=str(FOLLOW_UPS))
    finally:
        retriever.store.close()
    render = report.results[0]  # "and how much memory does it need?" after a Render question
    assert render.query == "How much memory does deploy Render need?"
    assert render.first_cited and "Memory on 512 MB" in render.lead
    assert report.first_citation >= report.hit_at_1
    assert "first-citation accuracy" in format_answer_report(report)


@pytest.mark.slow
def test_cli_answers_json_and_bad_input(sample_database: str, tmp_path: Path) -> None:
    path = write(tmp_path, '{"question": "What should I do if the server runs out of memory?",'
                 ' "expected": ["troubleshooting.md"]}\n'
                 '{"question": "Which file types can I ingest?", "expected": ["ingesting-documents.md"]}\n')
    env = {"DATABASE_URL": sample_database, "ASSISTANT_DATA_DIR": str(tmp_path)}
    result = run_cli("eval", "--answers", "--extractive", str(path), "--json", env=env)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["questions"] == 2 and data["first_citation_accuracy"] == 1.0
    assert [q["lead"].split(" (")[0] for q in data["per_question"]] == [
        "Troubleshooting > The server runs out of memory", "Ingesting documents > Supported file types"]
    bad = run_cli("eval", "--answers", str(write(tmp_path, '{"turns": "not a list", "expected": ["a"]}')), env=env)
    assert bad.returncode == 2 and "line 1" in bad.stderr and "Traceback" not in bad.stderr
