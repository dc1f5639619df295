"""Answer-level quality: does the answer a user reads lead with a passage of the right document?

For each corpus, every question goes through `ChatPipeline` (the chat's own path: condensing,
hybrid search, the retrieval-only answer) with no LLM, and `assistant.chat.answer_eval` scores
first-citation accuracy (the answer's first `[n]` is a passage of an expected document) beside
retrieval hit@1 of the same search. The target is first-citation accuracy >= hit@1: the answer
should never lead with a worse passage than retrieval ranked first.

Corpora (each in its own embedded PostgreSQL under bench/.cache/answers/, or DATABASE_URL's server):
- the sample guide (assistant/sample_docs, shipped vectors) with examples/sample-eval.jsonl;
- follow-ups on the sample guide: examples/sample-followups.jsonl (multi-turn lines);
- the questions issue 10 reported and the sample guide's starters: examples/sample-reported.jsonl;
- docs-python (../shared/data/docs-python, 80 HTML pages) with its 60 answerable questions,
  ingested with the product's own ingest; passage vectors come from bench/_vector_cache.py's
  shared cache, so the corpus is embedded once per machine.

Usage: python -m bench.answers [--corpus NAME ...] [--write | --no-write] [--misses]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "passive")  # see bench/cli_search.py


from assistant.config import Settings
from assistant.retrieval.embedders import LocalEmbedder
from assistant.retrieval.ingest import ingest_paths
from assistant.retrieval.search import Retriever
from assistant.retrieval.store import Store
from bench._common import CACHE, REPO
from bench._vector_cache import CachedPassages

DOCS_PYTHON = Path(os.environ.get("DOCS_PYTHON_DIR", REPO.parent / "shared" / "data" / "docs-python"))
DATA_DIR = CACHE / "answers"


def corpus_settings(name: str, **changes: Any) -> Settings:
    """Settings for one corpus' own database (a data dir per corpus, or a database on DATABASE_URL)."""
    os.environ["QUERY_CACHE_SIZE"] = "1024"
    base = Settings.from_env(dotenv=False)
    return dataclasses.replace(base, data_dir=DATA_DIR / name, sample_docs=False, **changes)


def docs_python_retriever(ingest: bool = True) -> Retriever:
    """docs-python indexed with the product's ingest (changed pages only; cached passage vectors).

    `ingest=False` searches the index as it stands (while a `--prepare` run is still embedding)."""
    settings = corpus_settings("docs-python")
    store = Store.open(settings, announce=False)
    embedder = CachedPassages(LocalEmbedder(settings))
    if not ingest:
        return Retriever(store, embedder, settings)
    t0 = time.perf_counter()
    report = ingest_paths([DOCS_PYTHON / "pages"], store, embedder, settings, prune=True, progress=True)
    print(f"docs-python: {len(report.added) + len(report.updated)} pages (re)indexed, {len(report.unchanged)}"
          f" unchanged, {report.chunks} chunks written, {embedder.misses} passages embedded,"
          f" {embedder.hits} from the cache, {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return Retriever(store, embedder, settings)


BASE_COMMIT = "3d68f81"  # the code before issue 10's retrieval-only answer (for --baseline)


def baseline_patch(commit: str) -> None:
    """Answer with the extractive answer and rule-based condensing of `commit` (the "before" figures).

    The two modules are loaded from git into memory and swapped into the pipeline; everything
    else (search, the pipeline itself) is today's code, so the comparison isolates the answer.
    """
    import subprocess
    import types

    import assistant.chat.pipeline as pipeline

    def load(name: str, path: str, patch: dict[str, str] | None = None) -> types.ModuleType:
        source = subprocess.run(["git", "show", f"{commit}:{path}"], cwd=REPO, check=True, capture_output=True,
                                text=True).stdout
        for old, new in (patch or {}).items():
            source = source.replace(old, new)
        module = types.ModuleType(name)
        module.__file__ = f"{commit}:{path}"
        sys.modules[name] = module
        exec(compile(source, module.__file__, "exec"), module.__dict__)
        return module

    old_extractive = load("_baseline_extractive", "assistant/chat/extractive.py")
    old_condense = load("_baseline_condense", "assistant/chat/condense.py",
                        {"from assistant.chat.extractive import": "from _baseline_extractive import"})
    pipeline.extractive_answer = old_extractive.extractive_answer  # type: ignore[attr-defined]
    pipeline.condense_question = old_condense.condense_question  # type: ignore[attr-defined]
    pipeline.rule_based_rewrite = old_condense.rule_based_rewrite  # type: ignore[attr-defined]


def sample_retriever() -> Retriever:
    """The sample guide from its shipped vectors (re-synced when the guide changed)."""
    from assistant.retrieval import open_retriever
    from assistant.retrieval.sample_vectors import SAMPLE_DOCS_DIR, PrecomputedPassages, load_vectors

    settings = corpus_settings("sample")
    retriever = open_retriever(dataclasses.replace(settings, sample_docs=True), announce=False)
    ingest_paths([SAMPLE_DOCS_DIR], retriever.store, PrecomputedPassages(retriever.embedder, load_vectors()),
                 settings, prune=True, progress=False, log=lambda _: None)  # type: ignore[arg-type]
    return retriever


def docs_python_questions(tmp: Path, indexed: set[str] | None = None) -> Path:
    """The answerable docs-python questions as an eval file (off-topic ones have no expected page);
    with `indexed` (page file names), only those whose expected page is in the index."""
    lines = [json.loads(line) for line in (DOCS_PYTHON / "questions.jsonl").read_text(encoding="utf-8").splitlines()
             if line.strip()]
    keep = [q for q in lines if q.get("kind") == "answerable" and q.get("expected")
            and (indexed is None or set(q["expected"]) & indexed)]
    path = tmp / "docs-python-answerable.jsonl"
    path.write_text("\n".join(json.dumps({"question": q["question"], "expected": q["expected"]}) for q in keep),
                    encoding="utf-8")
    return path


CORPORA = {
    "sample": ("the sample guide", "examples/sample-eval.jsonl"),
    "follow-ups": ("the sample guide, conversations", "examples/sample-followups.jsonl"),
    "reported": ("the sample guide, issue 10's questions and its starters", "examples/sample-reported.jsonl"),
    "docs-python": ("docs-python", None),
}


async def run_corpus(name: str, retriever: Retriever, questions_file: Path) -> Any:
    from assistant.chat.answer_eval import evaluate_answers, load_answer_questions
    from assistant.chat.pipeline import ChatPipeline

    settings = dataclasses.replace(retriever.settings, openai_api_key=None)  # extractive mode
    pipeline = ChatPipeline(retriever, settings, titles=retriever.store)
    try:
        return await evaluate_answers(pipeline, load_answer_questions(questions_file), path=str(questions_file))
    finally:
        await pipeline.aclose()


def main() -> None:
    import tempfile

    from assistant.chat.answer_eval import format_answer_report
    from bench._common import append_report, machine_summary, md_table, now_utc

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prepare", action="store_true", help="only index docs-python")
    parser.add_argument("--corpus", action="append", choices=sorted(CORPORA), help="default: all")
    parser.add_argument("--baseline", action="store_true",
                        help=f"also score the answers of commit {BASE_COMMIT} (before issue 10)")
    parser.add_argument("--as-indexed", action="store_true",
                        help="docs-python: search the index as it stands (no ingest) and keep the questions whose"
                             " page is indexed (a partial index while --prepare still runs)")
    parser.add_argument("--misses", action="store_true", help="print the questions not led by an expected document")
    parser.add_argument("--write", action=argparse.BooleanOptionalAction, default=True,
                        help="append the table to docs/BENCHMARKS.md (default: yes)")
    args = parser.parse_args()
    if args.prepare:
        docs_python_retriever().store.close()
        return
    started, machine = now_utc(), machine_summary()
    names = args.corpus or list(CORPORA)
    rows, notes = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            label, file = CORPORA[name]
            retriever = docs_python_retriever(not args.as_indexed) if name == "docs-python" else sample_retriever()
            indexed = None
            if name == "docs-python" and args.as_indexed:
                indexed = {Path(row["source"]).name for row in retriever.store.titles(limit=1000)}
                notes.append(f"\ndocs-python was measured on a partial index ({len(indexed)} of 80 pages, the"
                             " first in file-name order, embedding was still running): only the questions whose"
                             " expected page is indexed are asked.\n")
            questions = docs_python_questions(Path(tmp), indexed) if file is None else REPO / file
            try:
                t0 = time.perf_counter()
                after = asyncio.run(run_corpus(name, retriever, questions))
                seconds = time.perf_counter() - t0
                before = None
                if args.baseline:
                    import assistant.chat.pipeline as pipeline

                    saved = (pipeline.extractive_answer, pipeline.condense_question, pipeline.rule_based_rewrite)
                    baseline_patch(BASE_COMMIT)
                    try:
                        before = asyncio.run(run_corpus(name, retriever, questions))
                    finally:
                        pipeline.extractive_answer, pipeline.condense_question, pipeline.rule_based_rewrite = saved
            finally:
                retriever.store.close()
            if args.misses:
                print(f"== {name}\n{format_answer_report(after)}\n")
            rows.append([label, len(after.results),
                         "-" if before is None else f"{before.hit_at_1:.3f}",
                         "-" if before is None else f"{before.first_citation:.3f}",
                         f"{after.hit_at_1:.3f}", f"{after.first_citation:.3f}",
                         f"{len(after.led_astray)} / {len(after.refused)}",
                         f"{seconds / max(1, len(after.results)) * 1000:.0f} ms"])
            print(md_table(["corpus", "questions", "hit@1 before", "first citation before", "hit@1 after",
                            "first citation after", "led astray / refused", "per question"], rows[-1:]),
                  file=sys.stderr)
    table = md_table(["corpus", "questions", "retrieval hit@1 (before)", "first-citation accuracy (before)",
                      "retrieval hit@1 (after)", "first-citation accuracy (after)",
                      "hit@1 but led by another document / refused (after)", "time per question"], rows)
    print(table)
    body = (
        "Each question goes through `ChatPipeline` with no LLM (the chat's own path: rule-based follow-up "
        "condensing, hybrid search, the retrieval-only answer). *First-citation accuracy*: the answer's first "
        "`[n]` is a passage of an expected document; *retrieval hit@1*: the search's first passage is. Target: "
        "first-citation accuracy >= hit@1 on every corpus. \"Before\" is the answer and condensing code of commit "
        f"{BASE_COMMIT} swapped into today's pipeline (`--baseline`); hit@1 differs between the two only where "
        "condensing changed the query (the follow-up set). *Refused*: retrieval ranked an expected passage first "
        "but the pipeline answered that the documents don't cover the question (its MIN_SIMILARITY check, not "
        "the answer builder).\n\n" + table + "\n" + "".join(notes)
    )
    if args.write:
        append_report("Answer-level evaluation: first citation vs retrieval hit@1 (extractive mode)", body,
                      started=started, machine=machine)


if __name__ == "__main__":
    main()
