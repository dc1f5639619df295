"""Retrieval evaluation on your own questions: hit@k and MRR per search mode, and the misses.

`python -m assistant eval QUESTIONS.jsonl` reads one JSON object a line, each a question and the
document(s) that should answer it::

    {"question": "How do I deploy on Render?", "expected": ["deploy-render.md"], "lang": "en"}
    {"question": "How do I bake bread?", "expected": [], "kind": "off_topic"}

and runs every question through the product's own `Retriever` in each mode. Results are ranked as
a reader counts them: distinct documents in result order, each at its best chunk. A question
*hits at k* when an expected document is among the first k; its reciprocal rank is 1 / that
rank (0 when none is within the deepest k). Each search also says whether anything relevant was
found (assistant/retrieval/relevance.py): answerable questions should be accepted, and lines with
`"kind": "off_topic"` (no expected documents) rejected; both are counted. Lines with `"lang"` get
their scores per language too. Scores tell whether a change of settings or documents helped, and
the misses say where to look.

An expected source may be spelled as the product stores it (absolute path or URL), as a path
relative to the working directory, as any trailing part of the path (`guide/setup.md`,
`setup.md`, even `setup`), or as the document's title. A spelling that matches no indexed
document is reported as a warning and that question counts as a miss: a typo must not pass
silently. Stdlib only, besides the retrieval package: imports no chainlit, openai or tiktoken.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from assistant.retrieval.errors import AssistantError, QueryError
from assistant.retrieval.question_files import expected_sources, read_questions

if TYPE_CHECKING:
    from assistant.retrieval.search import Retriever

DEFAULT_KS = (1, 3, 5, 10)
EVAL_MODES = ("hybrid", "vector", "text")
QUESTION_KEYS = ("question", "query")
KINDS = ("answerable", "off_topic")

@dataclass(frozen=True)
class EvalQuestion:
    """One line of the questions file."""

    line: int
    question: str
    expected: tuple[str, ...]
    kind: str = "answerable"  # or "off_topic": nothing in the documents answers it
    lang: str | None = None

    @property
    def off_topic(self) -> bool:
        return self.kind == "off_topic"


@dataclass
class QuestionResult:
    """How one question fared in one mode."""

    question: EvalQuestion
    rank: int | None  # 1-based rank (among distinct documents) of an expected one, None when not found
    first: dict[str, Any] | None  # what came first: title, source, heading, similarity
    degraded: bool = False
    relevant: bool | None = None  # the retriever's decision: anything worth answering from?
    relevance_reason: str | None = None

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

    @property
    def answerable(self) -> list[QuestionResult]:
        return [r for r in self.results if not r.question.off_topic]

    @property
    def off_topic(self) -> list[QuestionResult]:
        return [r for r in self.results if r.question.off_topic]

    def hit_rate(self, k: int, lang: str | None = None) -> float:
        rs = self.scored(lang)
        return sum(r.hit_at(k) for r in rs) / len(rs) if rs else 0.0

    def mrr_for(self, lang: str | None = None) -> float:
        rs = self.scored(lang)
        return sum(r.reciprocal_rank for r in rs) / len(rs) if rs else 0.0

    @property
    def mrr(self) -> float:
        return self.mrr_for()

    def scored(self, lang: str | None) -> list[QuestionResult]:
        return [r for r in self.answerable if lang is None or r.question.lang == lang]

    @property
    def languages(self) -> list[str]:
        return sorted({r.question.lang for r in self.answerable if r.question.lang})

    @property
    def accepted(self) -> int:
        """Answerable questions for which the retriever found something relevant."""
        return sum(r.relevant is not False for r in self.answerable)

    @property
    def rejected(self) -> int:
        """Off-topic questions the retriever correctly found nothing relevant for."""
        return sum(r.relevant is False for r in self.off_topic)

    @property
    def misses(self) -> list[QuestionResult]:
        """Answerable questions whose expected documents are not in the deepest k."""
        return [r for r in self.answerable if not r.hit_at(max(self.ks))]

    @property
    def degraded(self) -> int:
        return sum(r.degraded for r in self.results)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "questions": len(self.results),
            "hit_at": {str(k): round(self.hit_rate(k), 4) for k in self.ks},
            "mrr": round(self.mrr, 4),
            "relevance": {"answerable": len(self.answerable), "answerable_accepted": self.accepted,
                          "off_topic": len(self.off_topic), "off_topic_rejected": self.rejected},
            "by_lang": {lang: {"questions": len(self.scored(lang)),
                               "hit_at": {str(k): round(self.hit_rate(k, lang), 4) for k in self.ks},
                               "mrr": round(self.mrr_for(lang), 4)} for lang in self.languages},
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
        relevant = {m.mode: {r.question.line: r.relevant for r in m.results} for m in self.modes}
        return {
            "file": self.path,
            "questions": len(self.questions),
            "documents": self.documents,
            "k": list(self.ks),
            "warnings": list(self.warnings),
            "modes": {m.mode: m.to_dict() for m in self.modes},
            "per_question": [
                {"line": q.line, "question": q.question, "expected": list(q.expected), "kind": q.kind,
                 "lang": q.lang, "ranks": {mode: ranks[mode][q.line] for mode in ranks},
                 "relevant": {mode: relevant[mode][q.line] for mode in relevant}}
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
    """Read a JSON Lines file (or one JSON array) of {"question", "expected"} objects
    (`question_files.read_questions`: every bad line found before failing)."""
    return read_questions(path, _question)


def _question(n: int, item: Any) -> EvalQuestion:
    if not isinstance(item, dict):
        raise ValueError(f'expected a JSON object like {{"question": ..., "expected": [...]}}, got {_kind(item)}')
    question = next((item[k] for k in QUESTION_KEYS if k in item), None)
    if not isinstance(question, str) or not question.strip():
        raise ValueError('no "question" (a non-empty string)')
    kind = item.get("kind", "answerable")
    if kind not in KINDS:
        raise ValueError(f'"kind" must be "answerable" or "off_topic", not {str(kind)[:40]!r}')
    lang = item.get("lang")
    if lang is not None and (not isinstance(lang, str) or not lang.strip()):
        raise ValueError('"lang" must be a language code such as "en" or "de"')
    expected = expected_sources(item)
    if kind == "off_topic":
        if expected not in (None, []):
            raise ValueError('an "off_topic" question has no expected sources; write "expected": []')
        expected = []
    elif not isinstance(expected, list) or not expected:
        raise ValueError('no "expected" sources (a file name, path, URL or title, or a list of them;'
                         ' for a question no document answers add "kind": "off_topic")')
    if not all(isinstance(e, str) and e.strip() for e in expected):
        raise ValueError('"expected" must hold non-empty strings')
    return EvalQuestion(n, " ".join(question.split()), tuple(e.strip() for e in expected), kind,
                        lang.strip() if lang else None)


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
            ranked = list(dict.fromkeys(h.source for h in result.hits))  # each document once, at its best
            rank = next((i for i, src in enumerate(ranked, 1) if src in targets[q.line]), None)
            top = result.hits[0] if result.hits else None
            first = None if top is None else {
                "title": top.title, "source": top.source, "heading": top.heading,
                "similarity": None if top.similarity is None else round(top.similarity, 4)}
            report.results.append(QuestionResult(q, rank, first, result.degraded, result.relevant,
                                                 result.relevance_reason))
        if report.degraded:
            warnings.append(f"{mode}: {report.degraded} of {len(questions)} searches fell back to full-text"
                            " (the embedder failed), so these scores are not the mode's own")
        reports.append(report)
    return EvalReport(path, list(questions), ks, reports, warnings, len(documents))


# -- output ------------------------------------------------------------------------------------------


def format_report(report: EvalReport, *, max_misses: int = 50) -> str:
    """A table of hit@k and MRR per mode, then the warnings and the misses."""
    modes = report.modes
    n_ans = len(modes[0].answerable) if modes else 0
    n_off = len(modes[0].off_topic) if modes else 0
    heads = ["mode", *(f"hit@{k}" for k in report.ks), "MRR", "misses", "answerable kept"]
    if n_off:
        heads.append("off-topic rejected")
    rows = []
    for m in modes:
        row = [m.mode, *(f"{m.hit_rate(k):.3f}" for k in report.ks), f"{m.mrr:.3f}", str(len(m.misses)),
               f"{m.accepted}/{n_ans}"]
        if n_off:
            row.append(f"{m.rejected}/{n_off}")
        rows.append(row)
    out = [f"{n_ans} answerable and {n_off} off-topic questions from {report.path or 'input'},"
           f" {report.documents} documents indexed; a hit = an expected document in the top k (documents"
           " counted once)", "", *_table(heads, rows)]
    langs = modes[0].languages if modes else []
    if len(langs) > 1:
        out += ["", "per language (answerable questions):"]
        lrows = [[m.mode, lang, str(len(m.scored(lang))), *(f"{m.hit_rate(k, lang):.3f}" for k in report.ks),
                  f"{m.mrr_for(lang):.3f}"] for m in modes for lang in langs]
        out += _table(["mode", "lang", "questions", *(f"hit@{k}" for k in report.ks), "MRR"], lrows)
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


def _table(heads: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(heads)]

    def fmt(cells: list[str]) -> str:
        pairs = enumerate(zip(cells, widths, strict=True))
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in pairs)

    return [fmt(heads), *(fmt(r) for r in rows)]


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

