"""One chat turn from question to answer, as a stream of events the UI renders.

    [QueryRewritten] -> Retrieved -> Token* -> Answer

The pipeline never shows a traceback: input it cannot search raises `QueryError` (before any
event), a database outage raises `DatabaseError` from the retriever, and everything that goes
wrong with the LLM turns into an answer anyway, extractive when nothing was streamed yet, or the
partial text marked as cut off, with a one-line notice saying why.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path
from typing import Any, Protocol

from assistant.chat.budget import PromptBudget
from assistant.chat.citations import StreamingCitationFilter, also_retrieved
from assistant.chat.condense import condense, previous_user_questions, rule_based_rewrite
from assistant.chat.events import Answer, QueryRewritten, Retrieved, Token
from assistant.chat.extractive import extractive_answer
from assistant.chat.llm import LLMClient, LLMError
from assistant.chat.llm_tokens import TokenCounter
from assistant.chat.prompts import AssembledPrompt, clean_history, load_prompts
from assistant.config import Settings
from assistant.retrieval.errors import ConfigError, QueryError
from assistant.retrieval.sanitize import storable
from assistant.retrieval.types import SearchResult

log = logging.getLogger(__name__)

MAX_QUESTION_CHARS = 2000  # longer messages are cut for retrieval and the prompt (with a notice)
MAX_HISTORY_CHARS = 8000  # per history message; the token budget trims further
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class SearchesAsync(Protocol):
    """The retriever contract the pipeline needs: search, nothing else."""

    async def asearch(self, query: str, *, k: int, mode: str, filters: dict | None) -> SearchResult: ...


class ListsTitles(Protocol):
    """Where "no answer" suggestions of words come from: the indexed documents' titles (a Store)."""

    def titles(self, limit: int = 50) -> list[dict[str, Any]]: ...


def validate_question(question: Any, notices: list[str]) -> str:
    """The question fit to search, or QueryError; very long text is cut (and a notice added)."""
    if not isinstance(question, str):
        raise QueryError("Please type a question.")
    text = storable(_CONTROL.sub(" ", question)).strip()  # a lone surrogate breaks the LLM request's JSON
    if not text:
        raise QueryError("Please type a question.")
    if not any(ch.isalnum() for ch in text):
        raise QueryError("Please ask your question in words: emoji or symbols alone can't be searched.")
    if len(text) > MAX_QUESTION_CHARS:
        cut = text[:MAX_QUESTION_CHARS]
        space = cut.rfind(" ")
        if space > MAX_QUESTION_CHARS * 0.8:
            cut = cut[:space]
        notices.append(
            f"Your message was {len(text):,} characters long; only its first {len(cut):,} characters were used."
        )
        text = cut.rstrip()
    return text


def is_relevant(result: SearchResult, min_similarity: float | None) -> bool:
    """Whether the hits are worth answering from: the retriever's own decision (per-corpus
    calibration, assistant/retrieval/relevance.py); for results that carry none, some hit and
    (when known and `min_similarity` is set) a similar enough one.
    """
    if not result.hits:
        return False
    if result.relevant is not None:
        return result.relevant
    if result.degraded or result.mode == "text" or min_similarity is None:
        return True
    sims = [h.similarity for h in result.hits if h.similarity is not None]
    return not sims or max(sims) >= min_similarity


def _lower_first(text: str) -> str:
    """Lower-case a leading sentence word ("The model" -> "the model"), not a name ("Hugging Face", "OpenAI")."""
    words = text.split(" ", 2)
    first = words[0]
    if not first[:1].isupper() or (first[1:] and not first[1:].islower()):
        return text
    if len(words) > 1 and words[1][:1].isupper():
        return text
    return first[:1].lower() + text[1:]


class ChatPipeline:
    """Answers questions over a retriever, with an LLM when configured (see module docstring).

    One instance serves every session; `run()` holds no state between calls.
    """

    def __init__(
        self,
        retriever: SearchesAsync,
        settings: Settings,
        llm: LLMClient | None = None,
        *,
        prompts_dir: str | Path | None = None,
        titles: ListsTitles | None = None,
    ) -> None:
        self.retriever = retriever
        self.settings = settings
        self._own_llm = llm is None and settings.llm_enabled
        self.llm = llm if llm is not None else (LLMClient(settings) if settings.llm_enabled else None)
        self.prompts = load_prompts(prompts_dir)  # fail at start-up, not at the first question
        self.titles = titles
        self.budget = PromptBudget(settings, self.llm, self.prompts)

    @property
    def counter(self) -> TokenCounter:
        """The LLM token counter, calibrated to the server's tokenizer when known (`PromptBudget`)."""
        return self.budget.counter

    @property
    def context_tokens(self) -> int:
        """The context window to budget for (`PromptBudget`)."""
        return self.budget.context_tokens

    def check_llm(self) -> None:
        """Check the LLM endpoint once (blocking; run at start-up, off the event loop). Logs only."""
        if self.llm is not None:
            self.llm.check_server()

    async def aclose(self) -> None:
        """Close the LLM client if this pipeline created it."""
        if self._own_llm and self.llm is not None:
            await self.llm.aclose()

    async def run(
        self,
        question: str,
        history: list[dict],
        *,
        k: int | None = None,
        mode: str = "hybrid",
        filters: dict | None = None,
        compact: bool = False,
    ) -> AsyncIterator[QueryRewritten | Retrieved | Token | Answer]:
        """Answer one message; yields [QueryRewritten], Retrieved, Token*, Answer.

        `history` holds the earlier turns ({"role": "user"|"assistant", "content": str}), oldest
        first, without the current question. `compact=True` is for the widget: shorter answers.
        Raises QueryError for unusable input and whatever AssistantError the retriever raises.
        """
        notices: list[str] = []
        q = validate_question(question, notices)
        turns = [{**t, "content": storable(t["content"][:MAX_HISTORY_CHARS])} for t in clean_history(history)]
        if turns and turns[-1]["role"] == "user" and turns[-1]["content"].strip() == q:
            turns.pop()  # the UI passed the current message as part of the history

        llm_error: LLMError | None = None
        query = q
        rewrite_ms: float | None = None
        method: str | None = None
        if previous_user_questions(turns):
            started = time.perf_counter()
            try:
                found = await condense(
                    q,
                    turns,
                    llm=self.llm,
                    prompts=self.prompts,
                    counter=self.counter if self.llm is not None else TokenCounter("estimate"),
                    context_tokens=self.context_tokens,
                )
                query, method = found.query, found.method
            except LLMError as err:
                log.warning("condensing the follow-up failed: %s", err.detail)
                llm_error = err
                query, method = rule_based_rewrite(q, turns), "rule"
            rewrite_ms = (time.perf_counter() - started) * 1000 if method else None
        if query != q:
            yield QueryRewritten(original=q, query=query, method=method or "rule")

        started = time.perf_counter()
        result = await self.retriever.asearch(query, k=k or self.settings.top_k, mode=mode, filters=filters)
        yield Retrieved(result, search_ms=(time.perf_counter() - started) * 1000, rewrite_ms=rewrite_ms,
                        rewrite_method=method)
        if result.degraded:
            reason = " ".join((result.degraded_reason or "the embedding service failed").split())
            if len(reason) > 220:
                reason = reason[:220].rsplit(" ", 1)[0] + "…"
            notices.append(
                f"Semantic search is unavailable ({_lower_first(reason.rstrip('.'))}); "
                "these results come from keyword search and may be less precise."
            )
        notices.extend(n for n in result.notices if n not in notices)

        if not is_relevant(result, self.settings.min_similarity):
            if llm_error is not None:
                notices.append(f"{llm_error}.")
            answer = await self._no_answer(query, result, compact)
        elif self.llm is not None and llm_error is None:
            answer = None
            async with aclosing(self._generate(q, query, turns, result, compact, notices)) as events:
                async for event in events:
                    if isinstance(event, Answer):
                        answer = event
                    else:
                        yield event
            assert answer is not None
            yield answer
            return
        else:
            if llm_error is not None:
                notices.append(f"{llm_error}; showing a retrieval-only answer.")
            answer = self._extractive(query, result, compact, llm_failed=llm_error is not None)
        if answer.text:
            yield Token(answer.text)
        answer.notices = notices + answer.notices
        answer.query = query
        yield answer

    # -- answer kinds ------------------------------------------------------------------------

    def _extractive(self, query: str, result: SearchResult, compact: bool, *, llm_failed: bool) -> Answer:
        hits = result.hits
        picked = extractive_answer(query, hits, compact=compact, llm_failed=llm_failed)
        return Answer(
            text=picked.text,
            kind="extractive",
            sources=list(hits),
            cited=picked.cited,
            also_retrieved=also_retrieved(picked.cited, len(hits)),
            query=query,
        )

    async def _no_answer(self, query: str, result: SearchResult, compact: bool) -> Answer:
        titles = await self._titles(result)
        if compact:
            text = "I couldn't find this in the documents. Try other or fewer keywords"
            text += f", or words from a title such as {titles[0]}." if titles else "."
        else:
            text = "I couldn't find an answer to this in your documents: they don't seem to cover it."
            hint = "Try rephrasing with the words your documents use"
            if titles:
                listed = ", ".join(titles[:-1]) + (" or " if len(titles) > 1 else "") + titles[-1]
                hint += f" (for example from titles like {listed})"
            text += f"\n\n{hint}, name the product or feature explicitly, or use fewer or different keywords."
        hits = result.hits
        return Answer(
            text=text,
            kind="no_answer",
            sources=list(hits),
            also_retrieved=list(range(1, len(hits) + 1)),
            query=query,
        )

    async def _titles(self, result: SearchResult, limit: int = 4) -> list[str]:
        """Document titles to suggest words from: the weak hits', then the indexed documents' (`titles`)."""
        found = list(dict.fromkeys(h.title for h in result.hits if h.title))
        if len(found) < limit and self.titles is not None:
            try:
                rows = await asyncio.wait_for(asyncio.to_thread(self.titles.titles, 20), timeout=2.0)
                found += [r["title"] for r in rows if r.get("title") and r["title"] not in found]
            except Exception as exc:  # suggestions are optional; never fail the answer for them
                log.debug("could not list document titles: %s", exc)
        return [f'"{t}"' for t in found[:limit]]

    async def _generate(
        self,
        question: str,
        query: str,
        turns: list[dict[str, str]],
        result: SearchResult,
        compact: bool,
        notices: list[str],
    ) -> AsyncIterator[Token | Answer]:
        """Stream an LLM answer; fall back to extractive if nothing arrived.

        An empty stream is diagnosed (llama.cpp's way of rejecting a prompt over its context);
        an overflow is retried once with a prompt cut to what the server holds.
        """
        assert self.llm is not None
        hits = result.hits
        prompt = await self.budget.fit(question, query, turns, hits, compact)

        filt = StreamingCitationFilter(len(prompt.sources))
        parts: list[str] = []
        lead = ""  # leading whitespace is held so that "nothing arrived" means no Token at all
        finish: str | None = None
        error: LLMError | None = None

        def take(piece: str) -> str:
            nonlocal lead
            if not parts:
                lead += piece
                if not lead.strip():
                    return ""
                piece, lead = lead.lstrip(), ""
            if piece:
                parts.append(piece)
            return piece

        for attempt in range(2):
            # A safety net for servers that ignore max_tokens and never stop: counted with our own
            # (possibly different) tokenizer, hence the generous margin over the requested length.
            token_cap = 2 * prompt.max_answer_tokens + 32
            streamed_tokens = 0
            filt = StreamingCitationFilter(len(prompt.sources))
            finish, error = None, None
            try:
                chat = self.llm.stream_chat(prompt.messages, max_tokens=prompt.max_answer_tokens)
                async with aclosing(chat) as stream:
                    async for delta in stream:
                        if delta.text:
                            out = take(filt.feed(delta.text))
                            if out:
                                yield Token(out)
                            streamed_tokens += self.counter.count(delta.text)
                            if streamed_tokens > token_cap:
                                log.warning("LLM answer passed %d tokens without stopping; cut off", token_cap)
                                finish = "length"
                                break
                        if delta.finish_reason:
                            finish = delta.finish_reason
            except LLMError as err:
                error = err
                if err.kind == "empty" and err.events == 0 and not parts:  # llama.cpp's overflow looks so
                    error = await self._diagnose_empty(prompt, err)
                log.warning("LLM answer failed: %s", error.detail)
            retry = not parts and error is not None and error.kind == "context" and not attempt
            if not retry or not self.budget.learn_from_overflow(error, prompt):
                break
            try:
                prompt = self.budget.assemble(question, query, turns, hits, compact, self.counter)
            except ConfigError as exc:  # the server's window is too small for any prompt of ours
                log.warning("no prompt fits the LLM server's context: %s", exc)
                break
        tail = take(filt.flush())
        if tail:
            yield Token(tail)
        if "question" in prompt.cut:
            notices.append("Your question was shortened to fit the language model's context window.")

        if not parts:
            if error is None:
                log.warning("the LLM's answer held only blanks or removed citations (finish_reason=%s)", finish)
            reason = str(error) if error else "The language model returned an empty answer"
            notices.append(f"{reason}; showing a retrieval-only answer.")
            answer = self._extractive(query, result, compact, llm_failed=True)
            if answer.text:
                yield Token(answer.text)
            answer.notices = notices
            yield answer
            return

        truncated = False
        if error is not None and error.kind != "empty":
            truncated = True
            notices.append(f"The answer was cut off ({_lower_first(str(error))}).")
        elif finish is None:
            truncated = True
            notices.append("The answer was cut off: the connection to the language model ended early.")
        elif finish == "length":
            truncated = True
            notices.append("The answer reached its length limit and was cut off.")
            log.info("an answer reached LLM_MAX_ANSWER_TOKENS=%d", self.settings.llm_max_answer_tokens)
        elif finish == "content_filter":
            truncated = True
            notices.append("The language model's content filter stopped the answer.")
        unsupported = not filt.cited
        if unsupported:
            notices.append("This answer cites none of the sources, so your documents do not back it.")
        yield Answer(
            text="".join(parts),
            kind="generated",
            sources=list(hits),
            cited=list(filt.cited),
            also_retrieved=also_retrieved(filt.cited, len(prompt.sources)),  # only what the model was given
            invalid_citations=list(filt.invalid),
            notices=notices,
            truncated=truncated,
            query=query,
            unsupported=unsupported,
        )

    async def _diagnose_empty(self, prompt: AssembledPrompt, error: LLMError) -> LLMError:
        """An empty stream is usually a rejected prompt (llama.cpp): ask the server which."""
        assert self.llm is not None
        try:
            found = await self.llm.diagnose_empty(prompt.messages)
        except Exception as exc:  # the diagnosis is a courtesy; the empty answer stands
            log.info("could not diagnose the empty LLM stream: %s", exc)
            return error
        return found or error
