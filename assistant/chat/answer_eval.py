"""Answer-level evaluation: does the answer a user reads lead with a passage of the right document?

`python -m assistant eval --answers QUESTIONS.jsonl` asks every question through `ChatPipeline`,
the chat's own path (follow-up condensing, search, the answer with its citations), and checks
the answer's FIRST citation: the passage a reader opens first must come from an expected
document. Retrieval hit@1 of the same search is reported beside it, so the two compare
directly: an answer that leads with a worse passage than retrieval put first shows up as
first-citation accuracy below hit@1.

Lines are those of `python -m assistant eval` ({"question", "expected"}), plus conversations:

    {"turns": ["How do I deploy on Render?", "and how much memory does it need?"], "expected": ["deploy-render.md"]}

Earlier turns are asked first, each answer going into the history as the chat would send it;
only the last turn is scored. A question the pipeline refuses ("not in your documents") cites
nothing and counts as a miss.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assistant.chat.events import Answer, Retrieved
from assistant.retrieval.errors import AssistantError
from assistant.retrieval.evaluate import SourceIndex
from assistant.retrieval.question_files import expected_sources, read_questions

if TYPE_CHECKING:
    from assistant.chat.pipeline import ChatPipeline


@dataclass(frozen=True)
class AnswerQuestion:
    """One scored question; `turns` are the user messages before it, oldest first."""

    line: int
    question: str
    expected: tuple[str, ...]
    turns: tuple[str, ...] = ()


@dataclass
class AnswerResult:
    """What one question got: the search's first hit and the answer's first citation."""

    question: AnswerQuestion
    query: str  # what was searched (the condensed follow-up)
    kind: str  # extractive | generated | no_answer
    hit1: bool  # retrieval ranked a passage of an expected document first
    first_cited: bool  # the answer's first citation is a passage of an expected document
    top: str = ""  # where the first hit is from
    lead: str = ""  # where the first citation is from ("" when nothing is cited)
    answer: str = ""


@dataclass
class AnswerReport:
    """All results, with the two rates a reader compares."""

    path: str
    results: list[AnswerResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def hit_at_1(self) -> float:
        return sum(r.hit1 for r in self.results) / len(self.results) if self.results else 0.0

    @property
    def first_citation(self) -> float:
        return sum(r.first_cited for r in self.results) / len(self.results) if self.results else 0.0

    @property
    def led_astray(self) -> list[AnswerResult]:
        """Retrieval had the right passage first, the answer led with another document."""
        return [r for r in self.results if r.hit1 and not r.first_cited and r.kind != "no_answer"]

    @property
    def refused(self) -> list[AnswerResult]:
        """Retrieval had the right passage first, but the answer said the documents don't cover it
        (the relevance threshold, MIN_SIMILARITY, not the answer builder)."""
        return [r for r in self.results if r.hit1 and r.kind == "no_answer"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.path,
            "questions": len(self.results),
            "first_citation_accuracy": round(self.first_citation, 4),
            "retrieval_hit_at_1": round(self.hit_at_1, 4),
            "led_by_another_document": len(self.led_astray),
            "refused_though_retrieval_was_right": len(self.refused),
            "warnings": list(self.warnings),
            "per_question": [
                {"line": r.question.line, "turns": [*r.question.turns, r.question.question],
                 "expected": list(r.question.expected), "query": r.query, "kind": r.kind, "hit1": r.hit1,
                 "first_cited": r.first_cited, "top": r.top, "lead": r.lead}
                for r in self.results
            ],
        }


def load_answer_questions(path: str | Path) -> list[AnswerQuestion]:
    """Questions and conversations from a JSON Lines file (see the module docstring), read as
    `eval` reads its questions (`question_files.read_questions`)."""
    return read_questions(path, _parse)


def _parse(n: int, item: Any) -> AnswerQuestion:
    if not isinstance(item, dict):
        raise ValueError('expected a JSON object like {"question": ..., "expected": [...]}')
    turns = item.get("turns", [item.get("question", item.get("query"))])
    if not isinstance(turns, list) or not turns or not all(isinstance(t, str) and t.strip() for t in turns):
        raise ValueError('no "question" (a non-empty string) or "turns" (a list of them)')
    expected = expected_sources(item)
    if not isinstance(expected, list) or not expected or not all(isinstance(e, str) and e.strip() for e in expected):
        raise ValueError('no "expected" sources (a file name, path, URL or title, or a list of them)')
    clean = [" ".join(t.split()) for t in turns]
    return AnswerQuestion(n, clean[-1], tuple(e.strip() for e in expected), tuple(clean[:-1]))


def _where(hit: Any) -> str:
    heading = " > ".join(h for h in hit.heading_path[1:] if h) if hit.heading_path else ""
    name = Path(hit.source).name if "://" not in hit.source else hit.source
    return f"{hit.title}{' > ' + heading if heading else ''} ({name})"


async def ask(pipeline: ChatPipeline, question: str, history: list[dict[str, str]]) -> tuple[Any, Answer]:
    """One turn through the pipeline: (search result, answer)."""
    result, answer = None, None
    async for event in pipeline.run(question, history):
        if isinstance(event, Retrieved):
            result = event.result
        elif isinstance(event, Answer):
            answer = event
    if answer is None:
        raise AssistantError(f"the pipeline gave no answer to {question!r}")
    return result, answer


async def evaluate_answers(pipeline: ChatPipeline, questions: Sequence[AnswerQuestion], *,
                           path: str = "") -> AnswerReport:
    """Ask every question (after its earlier turns) and score hit@1 and the first citation."""
    documents = pipeline.retriever.store.titles(limit=1_000_000)  # type: ignore[attr-defined]
    if not documents:
        raise AssistantError("The index holds no documents: run `python -m assistant ingest PATH` first")
    index = SourceIndex(documents)
    report = AnswerReport(path)
    for q in questions:
        targets: set[str] = set()
        for spelling in q.expected:
            found = index.resolve(spelling)
            if not found:
                report.warnings.append(f"line {q.line}: expected source {spelling!r} is not in the index"
                                       " (counted as a miss)")
            targets.update(found)
        history: list[dict[str, str]] = []
        for turn in q.turns:
            _, earlier = await ask(pipeline, turn, history)
            history += [{"role": "user", "content": turn}, {"role": "assistant", "content": earlier.text}]
        result, answer = await ask(pipeline, q.question, history)
        hits = result.hits if result is not None else []
        first = answer.sources[answer.cited[0] - 1] if answer.cited and answer.cited[0] <= len(answer.sources) \
            else None
        report.results.append(AnswerResult(
            question=q, query=answer.query or q.question, kind=answer.kind,
            hit1=bool(hits) and hits[0].source in targets,
            first_cited=first is not None and first.source in targets,
            top=_where(hits[0]) if hits else "", lead=_where(first) if first is not None else "",
            answer=answer.text,
        ))
    return report


def format_answer_report(report: AnswerReport, *, max_shown: int = 30) -> str:
    """The two rates, then the questions whose answer did not lead with an expected document."""
    n = len(report.results)
    out = [
        f"{n} questions from {report.path or 'input'}, answered through the chat pipeline",
        "",
        f"first-citation accuracy  {report.first_citation:.3f}  (the answer's first [n] is from an expected document)",
        f"retrieval hit@1          {report.hit_at_1:.3f}  (the search's first passage is from one)",
    ]
    if report.warnings:
        out += ["", f"{len(report.warnings)} warning(s):"] + [f"  {w}" for w in report.warnings]
    wrong = [r for r in report.results if not r.first_cited]
    if wrong:
        out += ["", f"{len(wrong)} answer(s) not led by an expected document:"]
        for r in wrong[:max_shown]:
            turns = " / ".join([*r.question.turns, r.question.question])
            out.append(f"  line {r.question.line}: {turns}")
            if r.query != r.question.question:
                out.append(f"    searched: {r.query}")
            out.append(f"    expected: {', '.join(r.question.expected)}")
            out.append(f"    led with: {r.lead or '(nothing cited: ' + r.kind + ')'}")
            out.append(f"    top hit:  {r.top or '(no hits)'}{'  <- expected' if r.hit1 else ''}")
        if len(wrong) > max_shown:
            out.append(f"  ... and {len(wrong) - max_shown} more (use --json for all)")
    return "\n".join(out)
