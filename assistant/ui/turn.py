"""One chat turn through Chainlit: search step, streamed answer, sources, and one-line errors.

`app.py` hands every message here. The pipeline's events become UI: `Retrieved` fills the
collapsible "document search" step, each `Token` is streamed into the answer, and `Answer` adds
the sources (side elements named `[n]`, or Markdown links in the widget), the "also retrieved"
line, the retrieval-only label and notices. Anything that goes wrong becomes one line in the chat
and the session stays usable; tracebacks go to the server log only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from contextlib import aclosing
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import chainlit as cl
from chainlit.chat_context import chat_context
from chainlit.context import context
from chainlit.utils import utc_now

from assistant.chat.events import Answer, QueryRewritten, Retrieved, Token
from assistant.chat.pipeline import validate_question
from assistant.originals import link_local_sources, session_base_url
from assistant.retrieval.errors import AssistantError, DatabaseError, QueryError
from assistant.ui.options import SearchOptions, search_options, settings_widgets
from assistant.ui.retrieval_view import retrieval_markdown, step_title
from assistant.ui.sources import answer_markdown, element_name, shown_numbers, source_panel, sources_metadata
from assistant.upstream_compat import forget_chat_context

if TYPE_CHECKING:
    from assistant.ui.runtime import Runtime

log = logging.getLogger(__name__)

HISTORY_MESSAGES = 12  # earlier messages handed to the pipeline (it trims to its token budget)
DB_DOWN = "The document database is not reachable right now, so I can't search. Please try again in a moment."
BROKEN = "Something went wrong while answering. Please try again; if it keeps happening, tell the site owner."
WARMING = "Getting ready: the search index is still loading (this takes a moment after a restart)…"


def is_widget() -> bool:
    """True when the message comes from the embeddable copilot widget."""
    try:
        return context.session.client_type == "copilot"
    except Exception:  # no session (background task)
        return False


async def say(text: str, *, error: bool = False) -> None:
    """Post one line to the chat (errors styled as errors)."""
    if error:
        await cl.ErrorMessage(content=text).send()
    else:
        await cl.Message(content=text).send()


# -- session lifecycle ---------------------------------------------------------------------


async def start_session(runtime: Runtime) -> None:
    """On chat start: offer the per-session search settings; make sure warm-up is under way."""
    if not runtime.ready:
        runtime.start_warmup()
    await cl.ChatSettings(settings_widgets(runtime.settings.top_k)).send()


async def settings_changed(values: dict[str, Any], runtime: Runtime) -> None:
    """Check new settings at once, so a bad filter is reported when typed, not at the next question."""
    try:
        search_options(values, runtime.settings.top_k)
    except QueryError as err:
        await say(f"{err}. Until it is fixed, questions will ask you to correct it.", error=True)


def end_session() -> None:
    """On chat end: drop the session's message list (Chainlit never frees it: upstream #2951)."""
    try:
        session_id = context.session.id
    except Exception:
        return
    forget_chat_context(session_id)


# -- history -------------------------------------------------------------------------------


def conversation_history(current_id: str | None) -> list[dict[str, str]]:
    """Earlier turns of this chat as {role, content}: questions as typed, answers without footers."""
    turns: list[dict[str, str]] = []
    for message in chat_context.get():
        if message.id == current_id:
            continue
        if message.type == "user_message" and message.content:
            turns.append({"role": "user", "content": message.content})
        elif message.type == "assistant_message" and not getattr(message, "is_error", False):
            answer = (message.metadata or {}).get("answer")
            if answer:
                turns.append({"role": "assistant", "content": answer})
    return turns[-HISTORY_MESSAGES:]


# -- the turn ------------------------------------------------------------------------------


async def answer(runtime: Runtime, message: cl.Message, *, documents: Sequence[int] = ()) -> None:
    """Answer one user message; never raises (every failure is one line in the chat).

    `documents`: search only these (the files just attached to the message).
    """
    question = message.content or ""
    try:
        validate_question(question, [])
        options = search_options(context.session.chat_settings, runtime.settings.top_k)
        if documents:
            options = replace(options, filters=("document_id=" + ",".join(map(str, documents)),),
                              filter_text="the attached file" + ("s" if len(documents) > 1 else ""))
    except QueryError as err:
        await say(str(err), error=True)
        return
    step: cl.Step | None = None
    try:
        if not runtime.ready:
            await say(WARMING)
        pipeline = await runtime.apipeline()
        run = context.current_step  # Chainlit's "on_message" run: the answer is its child, so is the step
        # An icon, not an avatar: the frontend would request /avatars/<step name>, and the name holds
        # the timings ("document search · 5 passages · 52 ms"), which Chainlit refuses with a 400.
        step = cl.Step(name=step_title(None), type="retrieval", show_input=False, icon="search",
                       parent_id=run.id if run is not None else None)
        step.start = utc_now()
        await step.send()
        await _run_pipeline(runtime, pipeline, question, message.id, options, step)
    except QueryError as err:
        await _drop(step)
        await say(str(err), error=True)
    except DatabaseError as err:
        log.warning("database unavailable during a chat turn: %s", err)
        await _drop(step)
        await say(DB_DOWN, error=True)
    except AssistantError as err:
        log.warning("chat turn failed: %s", err)
        await _drop(step)
        await say(f"I can't answer right now: {' '.join(str(err).split())[:300]}", error=True)
    except Exception:
        log.exception("chat turn crashed")
        await _drop(step)
        await say(BROKEN, error=True)


async def _drop(step: cl.Step | None) -> None:
    """Remove a half-finished search step so the error line stands alone."""
    if step is None:
        return
    try:
        await step.remove()
    except Exception as exc:  # the error line matters more than the cleanup
        log.debug("could not remove the search step: %s", exc)


async def _run_pipeline(runtime: Runtime, pipeline: Any, question: str, message_id: str | None,
                        options: SearchOptions, step: cl.Step) -> None:
    widget = is_widget()
    started = time.perf_counter()
    typed: str | None = None
    reply: cl.Message | None = None
    final: Answer | None = None
    history = conversation_history(message_id)
    events = pipeline.run(question, history, k=options.k, mode=options.mode, filters=options.filter_dict,
                          compact=widget)
    async with aclosing(events) as stream:
        async for event in stream:
            if isinstance(event, QueryRewritten):
                typed = event.original
            elif isinstance(event, Retrieved):
                # The search's own time; a follow-up rewrite by the LLM before it is shown apart.
                elapsed = event.search_ms if event.search_ms is not None else (time.perf_counter() - started) * 1000
                rewrite_ms = event.rewrite_ms if event.rewrite_method == "llm" else None
                result = event.result
                if result.mode != "text":
                    if result.degraded:
                        runtime.embedder_probe.set(False, result.degraded_reason or "embedding failed")
                    else:
                        runtime.embedder_probe.set(True)
                step.name = step_title(result, elapsed, rewrite_ms)
                step.output = retrieval_markdown(result, typed=typed, filters=options.filter_text or None,
                                                 elapsed_ms=elapsed, rewrite_ms=rewrite_ms)
                step.end = utc_now()
                await step.update()
            elif isinstance(event, Token):
                if reply is None:
                    reply = cl.Message(content="")
                await reply.stream_token(event.text)
            elif isinstance(event, Answer):
                final = event
    if final is None:  # the pipeline always ends with an Answer; be safe anyway
        raise AssistantError("The answer was lost on the way; please ask again")
    await _finish(runtime, reply or cl.Message(content=""), final, question, widget)


async def _finish(runtime: Runtime, reply: cl.Message, answer_: Answer, question: str, widget: bool) -> None:
    """Replace the streamed text with the final answer, its sources and notices; attach panels."""
    llm_enabled = runtime.settings.llm_enabled
    link_local_sources(answer_.sources, session_base_url())  # local files open at /documents/{id}
    reply.content = answer_markdown(answer_, llm_enabled=llm_enabled, widget=widget)
    reply.metadata = {
        "question": question,
        "answer": answer_.text,
        "kind": answer_.kind,
        "query": answer_.query,
        "cited": list(answer_.cited),
        "also_retrieved": list(answer_.also_retrieved),
        "notices": list(answer_.notices),
        "truncated": answer_.truncated,
        "widget": widget,
        "sources": sources_metadata(answer_),
    }
    if not widget:
        reply.elements = [
            cl.Text(name=element_name(n), content=source_panel(n, answer_.sources[n - 1]), display="side")
            for n in shown_numbers(answer_)
        ]
    await reply.send()
