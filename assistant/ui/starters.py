"""Starter questions for the welcome screen, drawn from what is actually indexed.

Fixed example questions would lie as soon as someone ingests their own documents, so starters
are built from document titles and their second-level headings (`Store.titles()`): a heading
that already is a question ("Can I use a bigger model?") is asked as is, an instruction ("Add your
own documents") becomes "How do I add my own documents?", a gerund "What's involved in ...?", a
noun phrase "What does “Title” say about ...?". Generic headings ("Options", "Install") are skipped.

Real documents are messier than the sample guide, and a broken starter is worse than none:
headings in capitals (man pages' "NAME", "GIT"; papers' "SEARCH STRATEGY"), headings that are
code ("json.dump(obj, fp)"), permalink marks ("Examples¶") and site suffixes in titles
("json — ... — Python 3.11.2 documentation") are cleaned or skipped, and a document whose only
question would be "What does “<a 20-word paper title>” cover?" offers none.
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
    "name", "synopsis", "description", "author", "authors", "bugs", "reporting bugs", "environment", "files",
    "exit status", "return value", "discussion", "configuration", "footnotes", "abstract", "background",
    "methods", "results", "conclusion", "conclusions", "acknowledgements", "acknowledgments", "appendix", "index",
    "module contents", "functions", "classes", "constants", "exceptions", "other", "misc", "miscellaneous",
    "reference", "api reference", "technical tutorial", "tutorial", "details", "general", "about", "faq",
}
_PERMALINK = re.compile(r"[\s\u00b6\u00a7#]+$")  # "Examples¶", "Usage #"
_TITLE_SEPARATORS = re.compile(r"\s+(?:\u2014|\u2013|\||-|\u00b7|::)\s+")
_SITE_WORDS = re.compile(r"(?i)\b(documentation|docs|manual|handbook|wiki|reference)\b")
_CODE_LIKE = re.compile(r"[A-Za-z_]\w*(?:\.\w+)+|\w\(|[=<>{}\[\]]|--\w|::")
MAX_TITLE_WORDS = 6  # a longer title (a paper's) makes no question to click
MAX_HEADING_WORDS = 9


@dataclass(frozen=True)
class StarterQuestion:
    """A starter: `label` on the button, `message` sent when clicked."""

    label: str
    message: str


def _clean(text: Any) -> str:
    return _PERMALINK.sub("", " ".join(str(text or "").split())).strip()


def _shouting(text: str) -> bool:
    """All capitals ("NAME", "SEARCH STRATEGY"): no way to know how to write it in a sentence."""
    letters = [c for c in text if c.isalpha()]
    return len(letters) > 1 and not any(c.islower() for c in letters)


def _usable_heading(section: str) -> bool:
    core = _core(section)
    return bool(core) and core.lower() not in _GENERIC and not _shouting(core) \
        and not _CODE_LIKE.search(core) and len(core.split()) <= MAX_HEADING_WORDS


def short_titles(titles: list[str]) -> dict[str, str]:
    """Titles without a site suffix ("json — JSON encoder — Python 3.11.2 documentation" -> "json —
    JSON encoder"): a last part that names documentation, or that several titles share, is dropped."""
    parts = {t: _TITLE_SEPARATORS.split(t) for t in titles}
    tails: dict[str, int] = {}
    for split in parts.values():
        if len(split) > 1:
            tails[split[-1]] = tails.get(split[-1], 0) + 1
    out = {}
    for title, split in parts.items():
        if len(split) > 1 and (_SITE_WORDS.search(split[-1]) or tails[split[-1]] >= 3):
            split = split[:-1]
        short = split[0] if len(split) > 1 and len(split[0].split()) <= 2 else " \u2014 ".join(split)
        out[title] = re.sub(r"\(\d[a-z]?\)$", "", short).strip() or short  # man pages: "git-show(1)"
    return out


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
    if words[0].lower() in _IMPERATIVE and words[0][:1].isupper() and words[0][1:].islower() and len(words) >= 2:
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
    usable = [s for s in (_clean(x) for x in sections or []) if s and _usable_heading(s)]
    if not usable:
        plain = len(title.split()) <= MAX_TITLE_WORDS and not _shouting(title) and not title.endswith((".", "?", "!"))
        return (3 if plain else 9), question_for(title, None)
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
    rows = list(rows)
    shorter = short_titles([_clean(r.get("title")) for r in rows if _clean(r.get("title"))])
    candidates = []
    for row in rows:
        title = shorter.get(_clean(row.get("title")), "")
        if not title:
            continue
        quality, message = _pick_question(title, row.get("sections") or [])
        if quality > 3:
            continue  # nothing that reads as a question a person would click
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
