"""Follow-up questions made searchable: "and how do I undo that?" needs the conversation.

With an LLM, a question that looks like a follow-up is rewritten by the model as a standalone
question; the rewrite must pass `check_rewrite` (one short question-like line in the conversation's
words) or the rule's rewrite is used instead. Without one, a rule decides: a question that is short,
refers back ("it", "that", "those") or opens like a continuation ("and ...", "what about ...") gets
the key terms of the previous user question(s) in place of its first pronoun ("how much memory
does it need?" after a Render question searches "How much memory does deploy Render need?"), or
after it when it has none, so the search keeps the conversation's subject; a question that already
stands alone is kept as typed. The follow-up set examples/sample-followups.jsonl measures this
(`python -m assistant eval --answers --extractive`).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from assistant.chat.extractive import key_terms, stem, terms
from assistant.chat.llm import LLMClient
from assistant.chat.llm_tokens import TokenCounter
from assistant.chat.prompts import PromptSet, clean_history, condense_messages

OPENERS = (
    "and", "but", "also", "so", "then", "or", "plus", "what about", "how about", "what if", "same for",
    "and what about", "and how about",
)  # fmt: skip
REFERENCES = frozenset(
    "it its it's itself that this these those they them their theirs there then he she him her one ones same "
    "such former latter above previous".split()
)
_DROP_OPENER = re.compile(r"^\s*(?:and|but|also|so|then|plus)\b[\s,]*", re.IGNORECASE)
_PRONOUN = re.compile(r"\b(it|that|this|they|them|those|these)\b(?!\s*[-'\u2019])", re.IGNORECASE)
_WORDS = re.compile(r"[\w']+", re.UNICODE)
MIN_STANDALONE_TERMS = 3
CONDENSE_MAX_TOKENS = 120

log = logging.getLogger(__name__)


def previous_user_questions(history: list[dict]) -> list[str]:
    """User turns of the history, most recent first."""
    return [t["content"] for t in reversed(clean_history(history)) if t["role"] == "user"]


def looks_like_follow_up(question: str) -> bool:
    """True when the question probably depends on the conversation (see module docstring)."""
    q = " ".join(question.lower().split())
    if any(q == o or q.startswith(o + " ") or q.startswith(o + ",") for o in OPENERS):
        return True
    if any(w in REFERENCES for w in _WORDS.findall(q)):
        return True
    return len(terms(q)) < MIN_STANDALONE_TERMS


def rule_based_rewrite(question: str, history: list[dict]) -> str:
    """Standalone search query without an LLM: the follow-up plus the previous question's subject."""
    question = " ".join(question.split())
    previous = previous_user_questions(history)
    if not previous or not looks_like_follow_up(question):
        return question
    have = {stem(w.lower()) for w in _WORDS.findall(question)}
    context: list[str] = []
    for prior in previous[:2]:  # the last question, and the one before if the last was itself a follow-up
        for word in key_terms(prior):
            root = stem(word.lower())
            if root not in have:
                have.add(root)
                context.append(word)
        if len(context) >= MIN_STANDALONE_TERMS:
            break
    if not context:
        return question
    body = _DROP_OPENER.sub("", question) or question
    subject = " ".join(context[:8])
    if _PRONOUN.search(body):  # the subject where the pronoun stood reads (and embeds) as one question
        body = _PRONOUN.sub(lambda _: subject, body, count=1)
        return body[0].upper() + body[1:]
    return f"{body[0].upper() + body[1:]} ({subject})"


_LABEL = re.compile(r"^(standalone question|rewritten question|question)\s*:\s*", re.IGNORECASE)
_LIST_ITEM = re.compile(r"^(?:\d{1,3}[.)]|[-*+\u2022])\s")
_QUESTION_WORDS = frozenset(
    "what how why when where which who whom whose can could does do did is are was were should would will "
    "may might must shall has have had list explain show tell give describe compare".split()
)
_QUESTION_MARKS = ("?", "\uff1f", "\u061f")  # ASCII, full-width, Arabic
MAX_REWRITE_CHARS = 300


@dataclass
class Condensed:
    """The query to search with and how it came about (for the UI's step and the log)."""

    query: str
    method: str | None = None  # "llm" | "rule" | None (no rewrite attempted: not a follow-up)
    rejected: str | None = None  # why the LLM's rewrite was not used


def _reply_lines(text: str) -> list[str]:
    """The model's non-empty lines without labels, quotes or Markdown emphasis."""
    lines = []
    for line in text.splitlines():
        line = line.strip().strip("`*_").strip()
        line = _LABEL.sub("", line).strip().strip("\"'\u201c\u201d\u2018\u2019").strip()
        if line:
            lines.append(" ".join(line.split()))
    return lines


def _clean_llm_query(text: str) -> str:
    """First non-empty line of the model's reply, without labels, quotes or Markdown."""
    lines = _reply_lines(text)
    return lines[0] if lines else ""


def _stems(text: str) -> set[str]:
    return {stem(w.lower()) for w in terms(text)}


def check_rewrite(reply: str, question: str, history: list[dict]) -> tuple[str, str | None]:
    """The model's rewrite if it is usable as a search query, else ("", why not).

    Usable: one line (a model that answers or lists options writes several), not a list item,
    question-like (ends with a question mark or opens with a question word), bounded in length,
    and made of the conversation's words (at least one shared term, most of its terms known).
    """
    lines = _reply_lines(reply)
    if not lines:
        return "", "empty reply"
    if len(lines) > 1:
        return "", f"{len(lines)} lines"
    line = lines[0]
    if _LIST_ITEM.match(line):
        return "", "a list item"
    if len(line) > min(MAX_REWRITE_CHARS, 3 * len(question) + 120):
        return "", f"{len(line)} characters"
    first = (_WORDS.findall(line.lower()) or [""])[0]
    if not line.rstrip().endswith(_QUESTION_MARKS) and first not in _QUESTION_WORDS:
        return "", "not a question"
    conversation = _stems(question) | set().union(*(_stems(t["content"]) for t in clean_history(history)))
    mine = _stems(line)
    if mine and (not mine & conversation or len(mine & conversation) < 0.4 * len(mine)):
        return "", "words not from the conversation"
    return line, None


def same_question(a: str, b: str) -> bool:
    """Equal up to case, spacing and punctuation (an LLM "rewrite" that changed nothing)."""
    def norm(s: str) -> str:
        return " ".join(_WORDS.findall(s.lower()))

    return norm(a) == norm(b)


async def condense(
    question: str,
    history: list[dict],
    *,
    llm: LLMClient | None,
    prompts: PromptSet,
    counter: TokenCounter,
    context_tokens: int,
) -> Condensed:
    """The standalone query to search with, and whether the LLM or the rule made it.

    The LLM is asked only for follow-ups: a question that already stands alone is searched as
    typed (asking a slow model costs seconds for nothing). A rewrite that fails `check_rewrite`
    is replaced by the rule's. Raises LLMError when the LLM fails; the caller then uses
    `rule_based_rewrite` (and knows the LLM is down, so it does not wait for it a second time).
    """
    question = " ".join(question.split())
    if not previous_user_questions(history):
        return Condensed(question)
    if llm is None:
        return Condensed(rule_based_rewrite(question, history), "rule")
    if not looks_like_follow_up(question):
        return Condensed(question)
    messages = condense_messages(question, history, prompts=prompts, counter=counter, context_tokens=context_tokens)
    raw = await llm.complete(messages, max_tokens=CONDENSE_MAX_TOKENS)
    rewritten, why = check_rewrite(raw, question, history)
    if not rewritten:
        log.info("the LLM's follow-up rewrite was not used (%s): %r", why, " ".join(raw.split())[:200])
        return Condensed(rule_based_rewrite(question, history), "rule", rejected=why)
    return Condensed(question if same_question(rewritten, question) else rewritten, "llm")


async def condense_question(
    question: str,
    history: list[dict],
    *,
    llm: LLMClient | None,
    prompts: PromptSet,
    counter: TokenCounter,
    context_tokens: int,
) -> str:
    """`condense(...).query`: the standalone query alone."""
    found = await condense(question, history, llm=llm, prompts=prompts, counter=counter,
                           context_tokens=context_tokens)
    return found.query
