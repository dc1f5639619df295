"""Follow-up questions made searchable: "and how do I undo that?" needs the conversation.

With an LLM, the condense prompt asks it to rewrite the follow-up as a standalone question (and to
return standalone questions unchanged). Without one, a rule decides: a question that is short,
refers back ("it", "that", "those") or opens like a continuation ("and ...", "what about ...") gets
the key terms of the previous user question(s) in place of its first pronoun ("how much memory
does it need?" after a Render question searches "How much memory does deploy Render need?"), or
after it when it has none, so the search keeps the conversation's subject; a question that already
stands alone is kept as typed. The follow-up set examples/sample-followups.jsonl measures this
(`python -m assistant eval --answers --extractive`).
"""

from __future__ import annotations

import re

from assistant.chat.extractive import key_terms, stem, terms
from assistant.chat.llm import LLMClient
from assistant.chat.prompts import PromptSet, clean_history, condense_messages
from assistant.chat.tokens import TokenCounter

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


def _clean_llm_query(text: str) -> str:
    """First non-empty line of the model's reply, without labels, quotes or Markdown."""
    for line in text.splitlines():
        line = line.strip().strip("`*_").strip()
        line = re.sub(r"^(standalone question|rewritten question|question)\s*:\s*", "", line, flags=re.IGNORECASE)
        line = line.strip().strip("\"'\u201c\u201d\u2018\u2019").strip()
        if line:
            return " ".join(line.split())
    return ""


def same_question(a: str, b: str) -> bool:
    """Equal up to case, spacing and punctuation (an LLM "rewrite" that changed nothing)."""
    def norm(s: str) -> str:
        return " ".join(_WORDS.findall(s.lower()))

    return norm(a) == norm(b)


async def condense_question(
    question: str,
    history: list[dict],
    *,
    llm: LLMClient | None,
    prompts: PromptSet,
    counter: TokenCounter,
    context_tokens: int,
) -> str:
    """The standalone query to search with (`question` itself when no rewrite is needed).

    Raises LLMError when the LLM fails; the caller then uses `rule_based_rewrite` (and knows the
    LLM is down, so it does not wait for it a second time).
    """
    question = " ".join(question.split())
    if not previous_user_questions(history):
        return question
    if llm is None:
        return rule_based_rewrite(question, history)
    messages = condense_messages(question, history, prompts=prompts, counter=counter, context_tokens=context_tokens)
    raw = await llm.complete(messages, max_tokens=CONDENSE_MAX_TOKENS)
    rewritten = _clean_llm_query(raw)
    # A reply that is empty or rambles (an answer instead of a question) is not a query.
    if not rewritten or len(rewritten) > 3 * len(question) + 300:
        return rule_based_rewrite(question, history)
    return question if same_question(rewritten, question) else rewritten
