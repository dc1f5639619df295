"""`search` and `eval`: retrieval only (no chat stack), and scoring retrieval or answers on a file
of questions."""

from __future__ import annotations

import argparse
import json
import shutil
import textwrap

from assistant.config import Settings
from assistant.errors import QueryError
from assistant.retrieval.types import SearchResult


def cmd_search(settings: Settings, args: argparse.Namespace) -> int:
    from assistant.retrieval import open_retriever

    if not args.query.strip():
        raise QueryError("The question is empty: type a few words to search for")
    from assistant.retrieval.filters import parse_filters

    parse_filters(args.filter)  # a bad filter is refused before the database is opened
    retriever = open_retriever(settings, announce=not args.json)
    try:
        result = retriever.search(args.query, k=args.k, mode=args.mode, filters=args.filter)
    finally:
        retriever.store.close()
    if args.json:
        print(json.dumps(result.to_dict(), ensure_ascii=False))
    else:
        print(format_result(result))
    return 0


def cmd_eval(settings: Settings, args: argparse.Namespace) -> int:
    """Score retrieval on a file of questions with known answers (see assistant/retrieval/evaluate.py)."""
    from assistant.retrieval import open_retriever
    from assistant.retrieval.evaluate import EVAL_MODES, evaluate, format_report, load_questions, parse_ks

    if args.answers:
        return cmd_eval_answers(settings, args)
    ks = parse_ks(args.k)
    questions = load_questions(args.questions)  # bad input fails before the database is opened
    retriever = open_retriever(settings, announce=not args.json)
    try:
        modes = EVAL_MODES if args.mode == "all" else (args.mode,)
        report = evaluate(retriever, questions, ks=ks, modes=modes, path=args.questions)
    finally:
        retriever.store.close()
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False))
    else:
        print(format_report(report))
    return 0


def cmd_eval_answers(settings: Settings, args: argparse.Namespace) -> int:
    """First-citation accuracy of the chat's answers beside retrieval hit@1 (assistant/chat/answer_eval.py)."""
    import asyncio
    import dataclasses

    from assistant.chat.answer_eval import AnswerReport, evaluate_answers, format_answer_report, load_answer_questions
    from assistant.chat.pipeline import ChatPipeline
    from assistant.retrieval import open_retriever

    questions = load_answer_questions(args.questions)  # bad input fails before the database is opened
    if args.extractive:
        settings = dataclasses.replace(settings, openai_api_key=None)
    retriever = open_retriever(settings, announce=not args.json)

    async def run() -> AnswerReport:
        pipeline = ChatPipeline(retriever, settings, titles=retriever.store)
        try:
            return await evaluate_answers(pipeline, questions, path=args.questions)
        finally:
            await pipeline.aclose()

    try:
        report = asyncio.run(run())
    finally:
        retriever.store.close()
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False))
    else:
        print(format_answer_report(report))
    return 0


def format_result(result: SearchResult, width: int | None = None) -> str:
    """Human-readable hits: how each was found, where it is, and a snippet."""
    width = width or min(shutil.get_terminal_size((100, 20)).columns, 120)
    lines = [f"{len(result.hits)} hits for {result.query!r} ({result.mode})"]
    if result.degraded:
        lines.append(f"DEGRADED: full-text only ({result.degraded_reason})")
    lines += [f"note: {n}" for n in result.notices]
    if result.relevant is not None:
        lines.append(f"relevant: {'yes' if result.relevant else 'NO'} ({result.relevance_reason})")
    for hit in result.hits:
        vec = f"vec #{hit.vector_rank} sim {hit.similarity:.3f}" if hit.vector_rank else (
            f"vec -    sim {hit.similarity:.3f}" if hit.similarity is not None else "vec -")
        txt = f"text #{hit.text_rank} ({hit.text_score:.3f})" if hit.text_rank else "text -"
        lines.append("")
        lines.append(f"{hit.rank:>2}. score {hit.score:.4f} | {vec} | {txt}")
        where = hit.title + (f" > {hit.heading}" if hit.heading else "")
        lines.append(f"    {where}")
        lines.append(f"    {hit.url or hit.source}" + (f" (page {hit.page})" if hit.page else ""))
        snippet = " ".join(hit.text.split())
        snippet = textwrap.shorten(snippet, width=min(3 * (width - 6), 300), placeholder=" ...")
        lines += textwrap.wrap(snippet, width=width - 4, initial_indent="    ", subsequent_indent="    ")
    if not result.hits:
        lines.append("(no hits: try other words, fewer filters, or ingest more documents)")
    t = result.timings_ms
    lines.append("")
    shown = [name for name in ("embed_ms", "search_ms", "total_ms") if name in t]
    lines.append("time: " + " | ".join(f"{name.removesuffix('_ms')} {t[name]:.1f} ms" for name in shown))
    return "\n".join(lines)


