"""Retrieval evaluation on your own questions: hit@k and MRR per search mode, and the misses.

`python -m assistant eval QUESTIONS.jsonl` reads one JSON object a line, each a question and the
document(s) that should answer it::

    {"question": "How do I deploy on Render?", "expected": ["deploy-render.md"]}

and runs every question through the product's own `Retriever` in each mode. A question *hits at
k* when a chunk of an expected document is among the first k chunks (chunks, not documents:
the chat reads TOP_K chunks); its reciprocal rank is 1 / the rank of the first such chunk (0 when
none is within the deepest k). Scores tell whether a change of settings or documents helped,
and the misses say where to look.

An expected source may be spelled as the product stores it (absolute path or URL), as a path
relative to the working directory, as any trailing part of the path (`guide/setup.md`,
`setup.md`, even `setup`), or as the document's title. A spelling that matches no indexed
document is reported as a warning and that question counts as a miss: a typo must not pass
silently. Stdlib only, besides the retrieval package: imports no chainlit, openai or tiktoken.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from assistant.retrieval.errors import AssistantError, QueryError

if TYPE_CHECKING:
    from assistant.retrieval.search import Retriever

DEFAULT_KS = (1, 3, 5, 10)
EVAL_MODES = ("hybrid", "vector", "text")
QUESTION_KEYS = ("question", "query")
EXPECTED_KEYS = ("expected", "expected_sources", "sources", "source")
MAX_SHOWN_ERRORS = 3


class EvalInputError(QueryError):
    """The questions file cannot be used as given (the message names the file and line)."""


@dataclass(frozen=True)
class EvalQuestion:
    """One line of the questions file."""

    line: int
    question: str
    expected: tuple[str, ...]


@dataclass
class QuestionResult:
    """How one question fared in one mode."""

    question: EvalQuestion
    rank: int | None  # 1-based rank of the first chunk of an expected document, None when not found
    first: dict[str, Any] | None  # what came first: title, source, heading, similarity
    degraded: bool = False

    def hit_at(self, k: int) -> bool:
        return self.rank is not None and self.rank <= k

    @property
    def reciprocal_rank(self) -> float:
        return 1.0 / self.rank if self.rank else 0.0


@dataclass
class ModeReport:
    """Scores of one search mode over all questions."""

    mode: str
    ks: tuple[int, ...]
    results: list[QuestionResult] = field(default_factory=list)

    def hit_rate(self, k: int) -> float:
        return sum(r.hit_at(k) for r in self.results) / len(self.results) if self.results else 0.0

    @property
    def mrr(self) -> float:
        return sum(r.reciprocal_rank for r in self.results) / len(self.results) if self.results else 0.0

    @property
    def misses(self) -> list[QuestionResult]:
        """Questions whose expected documents are not in the deepest k."""
        return [r for r in self.results if not r.hit_at(max(self.ks))]

    @property
    def degraded(self) -> int:
        return sum(r.degraded for r in self.results)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "questions": len(self.results),
            "hit_at": {str(k): round(self.hit_rate(k), 4) for k in self.ks},
            "mrr": round(self.mrr, 4),
            "degraded": self.degraded,
            "misses": [_miss_dict(r) for r in self.misses],
        }


@dataclass
class EvalReport:
    """The whole evaluation: per-mode scores, per-question ranks and the warnings."""

    path: str
    questions: list[EvalQuestion]
    ks: tuple[int, ...]
    modes: list[ModeReport]
    warnings: list[str]
    documents: int

    def to_dict(self) -> dict[str, Any]:
        ranks = {m.mode: {r.question.line: r.rank for r in m.results} for m in self.modes}
        return {
            "file": self.path,
            "questions": len(self.questions),
            "documents": self.documents,
            "k": list(self.ks),
            "warnings": list(self.warnings),
            "modes": {m.mode: m.to_dict() for m in self.modes},
            "per_question": [
                {"line": q.line, "question": q.question, "expected": list(q.expected),
                 "ranks": {mode: ranks[mode][q.line] for mode in ranks}}
                for q in self.questions
            ],
        }


def _miss_dict(r: QuestionResult) -> dict[str, Any]:
    return {"line": r.question.line, "question": r.question.question, "expected": list(r.question.expected),
            "rank": r.rank, "first": r.first}


# -- reading the questions file ---------------------------------------------------------------


def parse_ks(raw: Iterable[str] | None) -> tuple[int, ...]:
    """`--k 5`, `--k 1,3,5` or repeated `--k`: sorted, distinct, each 1..100."""
    if not raw:
        return DEFAULT_KS
    ks: set[int] = set()
    for item in raw:
        for part in str(item).split(","):
            part = part.strip()
            if not part:
                continue
            try:
                k = int(part)
            except ValueError:
                raise QueryError(f"--k {part!r} is not a whole number; use e.g. --k 1,3,5,10") from None
            if not 1 <= k <= 100:
                raise QueryError(f"--k {k} is out of range; use 1..100")
            ks.add(k)
    if not ks:
        raise QueryError("--k needs at least one number, e.g. --k 5")
    return tuple(sorted(ks))


def load_questions(path: str | Path) -> list[EvalQuestion]:
    """Read a JSON Lines file (or one JSON array) of {"question", "expected"} objects.

    Blank lines and lines starting with `#` are skipped. Every bad line is found before failing,
    and the error names the first few by line number.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise EvalInputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise EvalInputError(f"{path}: is a folder; give a .jsonl file of questions") from None
    except UnicodeDecodeError:
        raise EvalInputError(f"{path}: not UTF-8 text; give a .jsonl file of questions") from None
    except OSError as err:
        raise EvalInputError(f"{path}: cannot read ({err.strerror})") from None
    if text.lstrip().startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as err:
            raise EvalInputError(f"{path} line {err.lineno}: invalid JSON ({err.msg})") from None
        entries: list[tuple[int, Any]] = [(i, item) for i, item in enumerate(items, 1)]
        where = "item"
    else:
        entries, where = [], "line"
        errors: list[str] = []
        for n, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            try:
                entries.append((n, json.loads(line)))
            except json.JSONDecodeError as err:
                errors.append(f"line {n}: invalid JSON ({err.msg} at column {err.colno})")
        _raise_if(errors, path)
    questions, errors = [], []
    for n, item in entries:
        try:
            questions.append(_question(n, item))
        except ValueError as err:
            errors.append(f"{where} {n}: {err}")
    _raise_if(errors, path)
    if not questions:
        raise EvalInputError(f"{path}: no questions; write one JSON object a line, e.g."
                             ' {"question": "How do I deploy?", "expected": ["deploy.md"]}')
    return questions


def _raise_if(errors: Sequence[str], path: str | Path) -> None:
    if errors:
        more = f" (and {len(errors) - MAX_SHOWN_ERRORS} more)" if len(errors) > MAX_SHOWN_ERRORS else ""
        raise EvalInputError(f"{path} {'; '.join(errors[:MAX_SHOWN_ERRORS])}{more}")


def _question(n: int, item: Any) -> EvalQuestion:
    if not isinstance(item, dict):
        raise ValueError(f'expected a JSON object like {{"question": ..., "expected": [...]}}, got {_kind(item)}')
    question = next((item[k] for k in QUESTION_KEYS if k in item), None)
    if not isinstance(question, str) or not question.strip():
        raise ValueError('no "question" (a non-empty string)')
    expected = next((item[k] for k in EXPECTED_KEYS if k in item), None)
    if isinstance(expected, str):
        expected = [expected]
    if not isinstance(expected, list) or not expected:
        raise ValueError('no "expected" sources (a file name, path, URL or title, or a list of them)')
    if not all(isinstance(e, str) and e.strip() for e in expected):
        raise ValueError('"expected" must hold non-empty strings')
    return EvalQuestion(n, " ".join(question.split()), tuple(e.strip() for e in expected))


def _kind(value: Any) -> str:
    return {list: "a list", str: "a string", int: "a number", float: "a number", bool: "true/false"}.get(
        type(value), "null" if value is None else type(value).__name__)


# -- matching expected sources to indexed documents --------------------------------------------------


def _norm(text: str) -> str:
    text = text.strip().replace("\\", "/")
    while text.startswith("./"):
        text = text[2:]
    return text.rstrip("/").casefold()


class SourceIndex:
    """Resolves the spellings users write for a document to the sources the store holds."""

    def __init__(self, documents: Iterable[dict[str, Any]]) -> None:
        self.docs = [(d["source"], d.get("title") or "", d.get("url") or "") for d in documents]

    def resolve(self, spelling: str) -> list[str]:
        """Sources matching `spelling`, trying exact, then looser forms; [] when none does."""
        want = _norm(spelling)
        if not want:
            return []
        rules = (
            lambda src, title, url: _norm(src) == want or (url and _norm(url) == want),
            lambda src, title, url: "://" not in spelling and _norm(src) == _norm(_absolute(spelling)),
            lambda src, title, url: _norm(src).endswith("/" + want) or _norm(url).endswith("/" + want),
            lambda src, title, url: _norm(_without_suffix(src)).endswith("/" + want),
            lambda src, title, url: _norm(title) == want,
        )
        for rule in rules:
            found = [src for src, title, url in self.docs if rule(src, title, url)]
            if found:
                return found
        return []


def _absolute(spelling: str) -> str:
    try:
        return Path(spelling).expanduser().resolve().as_posix()
    except (OSError, RuntimeError):
        return spelling


def _without_suffix(source: str) -> str:
    if "://" in source:
        return source
    path = PurePosixPath(source)
    return str(path.with_suffix("")) if path.suffix else source


# -- running -----------------------------------------------------------------------------------------


def evaluate(retriever: Retriever, questions: Sequence[EvalQuestion], *, ks: Sequence[int] = DEFAULT_KS,
             modes: Sequence[str] = EVAL_MODES, path: str = "") -> EvalReport:
    """Search every question in every mode and score where its expected documents rank."""
    ks = tuple(sorted(set(ks)))
    store = retriever.store
    documents = store.titles(limit=1_000_000)
    if not documents:
        raise AssistantError("The index holds no documents: run `python -m assistant ingest PATH` first")
    index = SourceIndex(documents)
    warnings: list[str] = []
    targets: dict[int, set[str]] = {}
    for q in questions:
        found: set[str] = set()
        for spelling in q.expected:
            matches = index.resolve(spelling)
            if not matches:
                warnings.append(f"line {q.line}: expected source {spelling!r} is not in the index"
                                " (check the spelling; counted as a miss)")
            elif len(matches) > 1:
                warnings.append(f"line {q.line}: {spelling!r} matches {len(matches)} documents; any of them counts")
            found.update(matches)
        targets[q.line] = found
    depth = max(ks)
    reports = []
    for mode in modes:
        report = ModeReport(mode, ks)
        for q in questions:
            result = retriever.search(q.question, k=depth, mode=mode)
            rank = next((i for i, h in enumerate(result.hits, 1) if h.source in targets[q.line]), None)
            top = result.hits[0] if result.hits else None
            first = None if top is None else {
                "title": top.title, "source": top.source, "heading": top.heading,
                "similarity": None if top.similarity is None else round(top.similarity, 4)}
            report.results.append(QuestionResult(q, rank, first, result.degraded))
        if report.degraded:
            warnings.append(f"{mode}: {report.degraded} of {len(questions)} searches fell back to full-text"
                            " (the embedder failed), so these scores are not the mode's own")
        reports.append(report)
    return EvalReport(path, list(questions), ks, reports, warnings, len(documents))


# -- output ------------------------------------------------------------------------------------------


def format_report(report: EvalReport, *, max_misses: int = 50) -> str:
    """A table of hit@k and MRR per mode, then the warnings and the misses."""
    heads = ["mode", *(f"hit@{k}" for k in report.ks), "MRR", "misses"]
    rows = []
    for m in report.modes:
        rows.append([m.mode, *(f"{m.hit_rate(k):.3f}" for k in report.ks), f"{m.mrr:.3f}", str(len(m.misses))])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(heads)]
    line = "  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(heads, widths, strict=True)))
    out = [f"{len(report.questions)} questions from {report.path or 'input'}, {report.documents} documents indexed;"
           f" a hit = a chunk of an expected document in the top k", "", line]
    for row in rows:
        out.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                             for i, (c, w) in enumerate(zip(row, widths, strict=True))))
    if report.warnings:
        out += ["", f"{len(report.warnings)} warning(s):"] + [f"  {w}" for w in report.warnings]
    for m in report.modes:
        misses = m.misses
        if not misses:
            continue
        out += ["", f"{m.mode}: {len(misses)} miss(es), expected source not in the top {max(report.ks)}:"]
        for r in misses[:max_misses]:
            out.append(f"  line {r.question.line}: {r.question.question}")
            out.append(f"    expected: {', '.join(r.question.expected)}")
            out.append(f"    first:    {_describe_first(r.first)}")
        if len(misses) > max_misses:
            out.append(f"  ... and {len(misses) - max_misses} more (use --json for all)")
    return "\n".join(out)


def _describe_first(first: dict[str, Any] | None) -> str:
    if first is None:
        return "(no hits)"
    where = first["title"] + (f" > {first['heading']}" if first["heading"] else "")
    sim = "" if first["similarity"] is None else f", similarity {first['similarity']:.3f}"
    return f"{where} ({_short_source(first['source'])}{sim})"


def _short_source(source: str) -> str:
    if "://" in source:
        return source
    try:
        return Path(source).relative_to(Path.cwd()).as_posix()
    except ValueError:
        return source

