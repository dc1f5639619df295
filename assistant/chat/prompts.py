"""Prompt files, placeholder filling, source fencing and the token budget.

The prompts live in `prompts/*.md` (versioned with the code, editable without touching Python).
Placeholders are `{name}`; they are filled in one pass by `render`, so braces inside retrieved
text or a question (JSON, code) are never interpreted, unlike `str.format`.

Retrieved chunks go into the prompt as `<source id="n" ...>` blocks: data, fenced, with anything in
the text that looks like our own tags neutralised, so a document cannot close its block and talk
to the model as if it were us.

The budget: system prompt + history + sources + question + room for the answer must fit
`llm_context_tokens`. Oldest history goes first, then the weakest (lowest-ranked) sources; as a
last resort the one remaining source, then the question, are cut.
"""

from __future__ import annotations

import html
import re
import unicodedata
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

from assistant.app_files import source_root
from assistant.chat.citations import strip_citations
from assistant.chat.llm_tokens import MESSAGE_OVERHEAD, TokenCounter
from assistant.retrieval.errors import ConfigError
from assistant.retrieval.types import Hit

PROMPTS_DIR = source_root() / "prompts"  # the checkout's prompts/, or the wheel's copy of them
REQUIRED = {
    "system": (),
    "answer": ("sources", "question"),
    "condense": ("history", "question"),
}
LENGTH_RULES = {
    False: "Be concise: a short paragraph, or a few bullet points or steps when the question asks how to do something.",
    True: "Answer in 2-3 sentences at most: this is a small chat widget.",
}
COMPACT_ANSWER_TOKENS = 300  # widget answers are 2-3 sentences; no need to reserve more
MIN_SOURCE_TOKENS = 48  # below this, a cut source is not worth sending
MIN_QUESTION_TOKENS = 64
MIN_ANSWER_TOKENS = 128  # the answer's room shrinks to this before a prompt is declared too big

_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")
# Invisible characters (zero-width, direction marks, soft hyphen, BOM) a model reads through:
# `<\u200b/source>` looks like our closing tag to it, so they count as spaces here.
_INVISIBLE = "\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff"
_TAG_LOOKALIKE = re.compile(rf"<(?=[\s{_INVISIBLE}]*/?[\s{_INVISIBLE}]*sources?\b)", re.IGNORECASE)
# Characters a model reads as the ASCII ones of our tags, beyond what NFKC folds (full-width
# `＜／ｓｏｕｒｃｅ＞`, small forms, mathematical letters): angle brackets and quotation marks,
# slashes, and Cyrillic/Greek letters that look like those of "source".
_CONFUSABLE = str.maketrans({
    **dict.fromkeys("‹〈⟨〈˂ᐸ❮⧼«", "<"),
    **dict.fromkeys("∕⁄⧸╱ǀ", "/"),
    "ѕ": "s", "о": "o", "ο": "o", "օ": "o", "ս": "u", "υ": "u",
    "г": "r", "с": "c", "ϲ": "c", "е": "e",
})


def render(template: str, **values: str) -> str:
    """Fill `{name}` placeholders in one pass; `{{`/`}}` are literal braces; other braces stay.

    Values are inserted verbatim, so braces inside them (code, JSON in documents) are safe.
    """

    def sub(m: re.Match[str]) -> str:
        token = m.group(0)
        if token == "{{":
            return "{"
        if token == "}}":
            return "}"
        name = m.group(1)
        return values[name] if name in values else token

    return _PLACEHOLDER.sub(sub, template)


@dataclass(frozen=True)
class PromptSet:
    """The three prompt templates."""

    system: str
    answer: str
    condense: str


@lru_cache(maxsize=8)
def _load(directory: str) -> PromptSet:
    texts: dict[str, str] = {}
    for name, needed in REQUIRED.items():
        path = Path(directory) / f"{name}.md"
        try:
            text = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"cannot read the prompt file {path}: {exc.strerror or exc}") from None
        missing = [p for p in needed if "{" + p + "}" not in text]
        if missing:
            names = ", ".join("{" + p + "}" for p in missing)
            raise ConfigError(f"the prompt file {path} lacks the placeholder(s) {names}")
        texts[name] = text
    return PromptSet(**texts)


def load_prompts(prompts_dir: str | Path | None = None) -> PromptSet:
    """Read and check `system.md`, `answer.md` and `condense.md` (cached per directory)."""
    return _load(str(Path(prompts_dir or PROMPTS_DIR).resolve()))


def _skeleton(text: str) -> str:
    """`text` with each character replaced by the ASCII one it looks like, where it has one
    (NFKC, then `_CONFUSABLE`), one for one so that positions still match the original."""
    folded = []
    for ch in text:
        if ch.isascii():
            folded.append(ch)
            continue
        norm = unicodedata.normalize("NFKC", ch).translate(_CONFUSABLE)
        folded.append(norm if len(norm) == 1 else ch.translate(_CONFUSABLE))
    return "".join(folded)


def neutralise(text: str) -> str:
    """Defuse `<source>`/`</source>` look-alikes inside document text: the `<` (or whatever stands for
    it, e.g. a full-width `＜`) becomes `&lt;`. Look-alikes are matched after Unicode folding
    (`_skeleton`), invisible characters count as spaces, case is ignored."""
    skeleton = _skeleton(text) if not text.isascii() else text
    starts = [m.start() for m in _TAG_LOOKALIKE.finditer(skeleton)]
    for at in reversed(starts):
        text = text[:at] + "&lt;" + text[at + 1:]
    return text


def _attr(value: str) -> str:
    return html.escape(" ".join(value.split()), quote=True)


def format_source(number: int, hit: Hit, text: str | None = None) -> str:
    """One retrieved chunk as a fenced, numbered `<source>` block."""
    attrs = [f'id="{number}"', f'title="{_attr(hit.title or hit.source)}"']
    if hit.heading_path:
        attrs.append(f'section="{_attr(hit.heading)}"')
    if hit.page is not None:
        attrs.append(f'page="{hit.page}"')
    body = neutralise((hit.text if text is None else text).strip())
    return f"<source {' '.join(attrs)}>\n{body}\n</source>"


def clean_history(history: list[dict]) -> list[dict[str, str]]:
    """Valid user/assistant turns only; old answers lose their `[n]` (those numbers meant other sources)."""
    out: list[dict[str, str]] = []
    for item in history or []:
        if not isinstance(item, dict):
            continue
        role, content = item.get("role"), item.get("content")
        if role not in ("user", "assistant") or not isinstance(content, str) or not content.strip():
            continue
        text = strip_citations(content) if role == "assistant" else content
        out.append({"role": role, "content": text.strip()})
    return out


@dataclass
class AssembledPrompt:
    """Messages for one answer request and what the budget kept."""

    messages: list[dict[str, str]]
    sources: list[Hit]  # sources[i] is [i+1] in the prompt
    max_answer_tokens: int
    prompt_tokens: int
    history_dropped: int = 0
    sources_dropped: int = 0
    cut: list[str] = field(default_factory=list)  # "source" / "question" when text was shortened


def answer_room(context_tokens: int, max_answer_tokens: int, compact: bool) -> int:
    """Tokens to reserve for the answer (never more than half the window)."""
    room = min(max_answer_tokens, context_tokens // 2)
    return min(room, COMPACT_ANSWER_TOKENS) if compact else room


def prompt_limit(context_tokens: int, answer_tokens: int, margin: float) -> int:
    """Counted tokens the prompt may take: the window minus the answer's room, less the count's margin.

    The margin covers the prompt only: the answer's room is what the request asks for, and a
    server stops generating at the end of its window rather than rejecting the request.
    """
    return int((context_tokens - answer_tokens) * (1 - margin))


def assemble_answer_prompt(
    question: str,
    hits: list[Hit],
    history: list[dict],
    *,
    prompts: PromptSet,
    counter: TokenCounter,
    context_tokens: int,
    max_answer_tokens: int,
    compact: bool = False,
) -> AssembledPrompt:
    """Build the answer request within the token budget (see the module docstring for the order)."""
    room = answer_room(context_tokens, max_answer_tokens, compact)
    limit = prompt_limit(context_tokens, room, counter.margin)
    system = {"role": "system", "content": prompts.system}
    turns = clean_history(history)
    length_rule = LENGTH_RULES[compact]
    texts = [h.text for h in hits]
    cut: list[str] = []

    def user_message(n_sources: int, q: str) -> dict[str, str]:
        blocks = "\n\n".join(format_source(i + 1, hits[i], texts[i]) for i in range(n_sources))
        body = render(prompts.answer, sources=blocks or "(no sources)", question=q, length_rule=length_rule)
        return {"role": "user", "content": body}

    # Cheap estimates per piece pick the cut; an exact count of the whole request confirms it.
    fixed = counter.count_messages([system]) + counter.count(user_message(0, question)["content"]) + MESSAGE_OVERHEAD
    turn_cost = [counter.count(t["content"]) + MESSAGE_OVERHEAD for t in turns]
    src_cost = [counter.count(format_source(i + 1, h)) + 2 for i, h in enumerate(hits)]
    start, n_src = 0, len(hits)

    def drop_oldest_turn() -> None:
        nonlocal start
        start += 1
        while start < len(turns) and turns[start]["role"] == "assistant":
            start += 1  # never open with an answer whose question is gone

    while fixed + sum(turn_cost[start:]) + sum(src_cost[:n_src]) > limit:
        if start < len(turns):
            drop_oldest_turn()
        elif n_src > 1:
            n_src -= 1
        else:
            break

    q = question
    while True:
        messages = [system, *turns[start:], user_message(n_src, q)]
        total = counter.count_messages(messages)
        over = total - limit
        if over <= 0:
            break
        if start < len(turns):
            drop_oldest_turn()
        elif n_src > 1:
            n_src -= 1
        elif n_src == 1 and counter.count(texts[0]) - over - 8 >= MIN_SOURCE_TOKENS:
            texts[0] = counter.truncate(texts[0], counter.count(texts[0]) - over - 8)
            cut.append("source")
        elif counter.count(q) > MIN_QUESTION_TOKENS:
            q = counter.truncate(q, max(MIN_QUESTION_TOKENS, counter.count(q) - over - 8))
            cut.append("question")
        elif room > MIN_ANSWER_TOKENS:  # a shorter answer beats no answer
            room = max(MIN_ANSWER_TOKENS, room - int(over / (1 - counter.margin)) - 8)
            limit = prompt_limit(context_tokens, room, counter.margin)
        else:
            raise ConfigError(
                f"LLM_CONTEXT_TOKENS={context_tokens} is too small for the prompt; "
                "raise it or lower LLM_MAX_ANSWER_TOKENS"
            )
    kept = [replace(h, text=texts[i]) if texts[i] != h.text else h for i, h in enumerate(hits[:n_src])]
    return AssembledPrompt(
        messages=messages,
        sources=kept,
        max_answer_tokens=room,
        prompt_tokens=total,
        history_dropped=start,
        sources_dropped=len(hits) - n_src,
        cut=sorted(set(cut)),
    )


def condense_messages(
    question: str,
    history: list[dict],
    *,
    prompts: PromptSet,
    counter: TokenCounter,
    context_tokens: int,
    max_turns: int = 6,
    max_turn_tokens: int = 200,
) -> list[dict[str, str]]:
    """The request that turns a follow-up into a standalone query: recent turns, each trimmed."""
    turns = clean_history(history)[-max_turns:]
    budget = context_tokens // 2
    lines: list[str] = []
    for t in reversed(turns):
        who = "User" if t["role"] == "user" else "Assistant"
        text = counter.truncate(" ".join(t["content"].split()), max_turn_tokens)
        line = f"{who}: {text}"
        if sum(counter.count(x) for x in lines) + counter.count(line) > budget:
            break
        lines.insert(0, line)
    body = render(prompts.condense, history="\n".join(lines), question=" ".join(question.split()))
    return [{"role": "user", "content": body}]
