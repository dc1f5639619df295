"""Starter questions for the welcome screen, drawn from what is actually indexed.

Fixed example questions would lie as soon as someone ingests their own documents, so starters
are built from document titles and their second-level headings (`Store.titles()`): a heading
that already is a question ("Can I use a bigger model?") is asked as is, an instruction ("Add your
own documents") becomes "How do I add my own documents?", a gerund "What's involved in ...?", a
noun phrase "What does “Title” say about ...?". Generic headings ("Options", "Install") are skipped.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

MAX_STARTERS = 4
LABEL_LIMIT = 70

_GENERIC = {
    "overview", "introduction", "intro", "options", "install", "installation", "usage", "basic usage",
    "step by step", "exit codes", "where to go next", "what you get", "summary", "contents",
    "table of contents", "see also", "next steps", "references", "license", "notes", "example", "examples",
}


@dataclass(frozen=True)
class StarterQuestion:
    """A starter: `label` on the button, `message` sent when clicked."""

    label: str
    message: str


def _clean(text: Any) -> str:
    return " ".join(str(text or "").split()).strip()


def _lower_first(phrase: str) -> str:
    """Lower-case an ordinary leading word ("Health checks" -> "health checks"), keep names and acronyms."""
    words = phrase.split()
    word = words[0] if words else ""
    proper = len(words) > 1 and words[1][:1].isupper()  # "Hugging Face", "Google Cloud"
    if len(word) > 1 and word[0].isupper() and word[1:].replace("'", "").replace("-", "").isalpha() \
            and word[1:].islower() and not proper:
        return phrase[0].lower() + phrase[1:]
    return phrase


def _stable(*parts: str) -> str:
    return hashlib.sha1("\x00".join(parts).encode()).hexdigest()


def _is_question(section: str) -> bool:
    return section.endswith("?") and len(section.split()) >= 3


_IMPERATIVE = {
    "add", "allow", "build", "call", "change", "check", "choose", "configure", "connect", "create", "deploy",
    "embed", "enable", "get", "ingest", "install", "make", "open", "remove", "run", "search", "set", "start",
    "try", "turn", "update", "upgrade", "use", "write",
}
_CLAUSE_VERBS = {"is", "are", "was", "were", "runs", "exits", "fails", "fail", "crashes", "hangs", "miss", "misses"}
_TROUBLE = ("troubleshoot", "problem", "error", "issue", "faq")


def _core(section: str) -> str:
    """The heading without parentheticals, and without a label before or after a colon."""
    text = re.sub(r"\s*\([^)]*\)", "", section).strip().rstrip(".:")
    if ":" in text:
        left, _, right = text.partition(":")
        left, right = left.strip(), right.strip()
        label_only = (len(left.split()) == 1 and left[:1].islower()) or re.match(r"(?i)^(step|part|phase)\s*\d+$", left)
        text = right if (label_only and right) else left
    return text


def _my(phrase: str) -> str:
    return re.sub(r"\byour\b", "my", re.sub(r"\byours\b", "mine", phrase))


def _shape(title: str, section: str) -> tuple[int, str]:
    """(quality, question) for one heading: 0 is best; 3 reads poorly and is used only as a last resort."""
    if _is_question(section):
        words = section.lower().rstrip("?").split()
        if not any(t in title.lower() for t in _TROUBLE) and len(words) <= 5 and {"it", "this", "that"} & set(words):
            return 1, f"{title}: {_lower_first(section)}"  # "How long does it take?" needs its subject
        return 0, section
    core = _core(section)
    words = core.split()
    if not words:
        return 3, question_for(title, None)
    about = f"What does “{title}” say about {_lower_first(core)}?"
    if any(w.lower() in _CLAUSE_VERBS for w in words[1:]):  # a symptom: "The database is unreachable"
        if any(t in title.lower() for t in _TROUBLE):
            return 1, f"What should I do if {_lower_first(core)}?"
        return 3, about
    if words[0].lower() in _IMPERATIVE and words[0][:1].isupper() and len(words) >= 2:
        return 1, f"How do I {_my(core[0].lower() + core[1:])}?"
    return (2 if len(words) <= 5 else 3), about


def question_for(title: str, section: str | None) -> str:
    """A natural question about one section of one document (or about the document itself)."""
    title, section = _clean(title), _clean(section)
    if section:
        return _shape(title, section)[1]
    return f"What does “{title}” cover?"


def _pick_question(title: str, sections: Iterable[Any]) -> tuple[int, str]:
    """The best-reading question about a document, with its quality (0 best)."""
    usable = [s for s in (_clean(x) for x in sections or []) if s and _core(s).lower() not in _GENERIC]
    if not usable:
        return 3, question_for(title, None)
    shaped = [(*_shape(title, s), _stable(title, s)) for s in usable]
    quality, question, _ = min(shaped, key=lambda t: (t[0], t[2]))  # ties broken stably, not alphabetically
    return quality, question


def _label(message: str) -> str:
    if len(message) <= LABEL_LIMIT:
        return message
    return message[: LABEL_LIMIT - 1].rstrip() + "…"


def build_starters(rows: Iterable[Mapping[str, Any]], limit: int = MAX_STARTERS) -> list[StarterQuestion]:
    """Up to `limit` starters from `Store.titles()` rows: one per document, the most natural
    questions first, bigger documents first among equals."""
    candidates = []
    for row in rows:
        title = _clean(row.get("title"))
        if not title:
            continue
        quality, message = _pick_question(title, row.get("sections") or [])
        candidates.append((quality, -int(row.get("chunk_count") or 0), title.lower(), message))
    out: list[StarterQuestion] = []
    seen: set[str] = set()
    for *_, message in sorted(candidates):
        if message.lower() in seen:
            continue
        seen.add(message.lower())
        out.append(StarterQuestion(label=_label(message), message=message))
        if len(out) >= limit:
            break
    return out
