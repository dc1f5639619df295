"""Turning untrusted text (document chunks, titles, questions) into Markdown that renders literally.

Chainlit renders messages and text elements with react-markdown plus GFM and directives. A
document may contain `<script>`, `[links](javascript:...)`, `:::directives`, tables or stray code
fences; none of that may execute or break the layout. Prose is therefore backslash-escaped (in
CommonMark every ASCII punctuation character can be escaped, so nothing in it is syntax any more)
and code keeps its shape inside a fence longer than any backtick run it contains.

At the foundation (stdlib only) because both the retrieval-only answers (chat) and the UI write
with it, and loading it must not load the chat stack before the port opens.
"""

from __future__ import annotations

import re
import string
from urllib.parse import urlsplit

from assistant.markdown_syntax import FENCE_LINE, backtick_fence

_PUNCT = frozenset(string.punctuation)
_BACKTICKS = re.compile(r"`+")
_LANG = re.compile(r"^[A-Za-z0-9_+-]{1,20}$")


def escape_text(text: str) -> str:
    """Escape every ASCII punctuation character: the result renders as exactly `text`."""
    return "".join("\\" + ch if ch in _PUNCT else ch for ch in text)


def escape_inline(text: str, limit: int | None = None) -> str:
    """One line of literal text (whitespace collapsed, optionally shortened with an ellipsis)."""
    line = " ".join(str(text).split())
    if limit is not None and len(line) > limit:
        line = line[: max(1, limit - 1)].rstrip() + "…"
    return escape_text(line)


def safe_url(url: str | None) -> str | None:
    """The URL if it is an absolute http(s) link fit for a Markdown destination, else None.

    Anything else (javascript:, data:, relative paths, text with spaces) is not linked at all.
    """
    if not url:
        return None
    url = str(url).strip()
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return url.replace("<", "%3C").replace(">", "%3E")


def link(label: str, url: str | None) -> str:
    """`[label](<url>)` with the label escaped, or just the escaped label when the URL is unsafe."""
    target = safe_url(url)
    text = escape_inline(label)
    return f"[{text}](<{target}>)" if target else text


def _fence_for(lines: list[str]) -> str:
    return backtick_fence("\n".join(lines))


def _code_block(lines: list[str], info: str) -> list[str]:
    fence = _fence_for(lines)
    lang = info.strip().split()[0] if info.strip() else ""
    lang = lang if _LANG.match(lang) else ""
    return [fence + lang, *lines, fence]


def code_block(lines: list[str], info: str = "") -> str:
    """Code shown exactly: a fence longer than any backtick run inside, a safe language tag."""
    return "\n".join(_code_block(lines, info))


_TABLE_RULE = re.compile(r"^\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")
_CELL_SPLIT = re.compile(r"(?<!\\)\|")


def table_cells(row: str) -> list[str]:
    """The cells of one `| a | b |` row (an escaped `\\|` stays inside its cell)."""
    row = row.strip()
    row = row[1:] if row.startswith("|") else row
    row = row[:-1] if row.endswith("|") and not row.endswith("\\|") else row
    return [c.strip() for c in _CELL_SPLIT.split(row)]


def is_table(lines: list[str]) -> bool:
    """A GFM table: a header row, then a rule row (`|---|---|`)."""
    return len(lines) >= 2 and "|" in lines[0] and bool(_TABLE_RULE.match(lines[1].strip())) and "|" in lines[1]


def literal_table(lines: list[str]) -> list[str]:
    """A document's table as a GFM table whose cells render literally (code spans stay code)."""
    rows = [table_cells(line) for line in lines if line.strip() and not _TABLE_RULE.match(line.strip())]
    width = max(len(r) for r in rows)

    def cell(text: str) -> str:  # a pipe ends a cell even inside a code span, unless escaped
        return inline_literal(text).replace("|", "\\|").replace("\\\\|", "\\|") or " "

    out = []
    for n, row in enumerate(rows):
        row = row + [""] * (width - len(row))
        out.append("| " + " | ".join(cell(c) for c in row) + " |")
        if n == 0:
            out.append("|" + "---|" * width)
    return out


_REF_LIKE = re.compile(r"\[(?=\d+\])")
WORD_JOINER = "\u2060"


def guard_refs_in_code(markdown: str) -> str:
    """Keep `[1]` inside code from becoming a source link in a chat message.

    Chainlit links every occurrence of an element name (`[1]`, `[2]`...) in a message's raw
    Markdown, code included, so `argv[1]` in a code block would turn into `argv[[1]](...)`.
    Outside code our escaping already breaks the match (`\\[1\\]`); inside code nothing can be
    escaped, so an invisible word joiner goes after the bracket: the text looks as written.
    """
    out: list[str] = []
    fence: str | None = None
    for line in markdown.split("\n"):
        match = FENCE_LINE.match(line.lstrip("> ").rstrip()) if line.lstrip().startswith(("`", "~", ">")) else None
        if fence is None and match:
            fence = match.group(1)
            out.append(line)
        elif fence is not None:
            if match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence) \
                    and not match.group(2).strip():
                fence = None
                out.append(line)
            else:
                out.append(_REF_LIKE.sub("[" + WORD_JOINER, line))
        else:
            out.append(_CODE_SPAN.sub(lambda m: _REF_LIKE.sub("[" + WORD_JOINER, m.group(0)), line))
    return "\n".join(out)


_CODE_SPAN = re.compile(r"(`+)(?!`)(.+?)(?<!`)\1(?!`)")
_BOLD = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_BULLET = re.compile(r"^([-*+\u2022])\s+(.*)$")
_NUMBERED = re.compile(r"^(\d{1,3})([.)])\s+(.*)$")
_HEADING_LINE = re.compile(r"^#{1,6}\s+(.*?)\s*#*$")
_STRUCTURAL = re.compile(r"^(?:[-*+\u2022]\s|\d{1,3}[.)]\s|#{1,6}\s|\||>)")


def _code_span(content: str) -> str:
    """A code span whose content is shown exactly (fence longer than any backtick run inside)."""
    longest = max((len(m) for m in _BACKTICKS.findall(content)), default=0)
    ticks = "`" * (longest + 1)
    return f"{ticks} {content} {ticks}"


def _bold_and_text(text: str) -> str:
    out, pos = [], 0
    for m in _BOLD.finditer(text):
        out.append(escape_text(text[pos:m.start()]))
        out.append("**" + escape_text(m.group(2)) + "**")
        pos = m.end()
    out.append(escape_text(text[pos:]))
    return "".join(out)


def inline_literal(text: str) -> str:
    """One line of document text: code spans stay code, `**bold**` stays bold, everything else is
    escaped. Only markup we write ourselves around escaped content survives, so nothing in the
    document (HTML, links, images, directives) can take effect."""
    out, pos = [], 0
    for m in _CODE_SPAN.finditer(text):
        out.append(_bold_and_text(text[pos:m.start()]))
        out.append(_code_span(m.group(2)))
        pos = m.end()
    out.append(_bold_and_text(text[pos:]))
    return "".join(out)


def _visual_line(line: str) -> str:
    heading = _HEADING_LINE.match(line)
    if heading:
        return "**" + escape_text(heading.group(1)) + "**"
    bullet = _BULLET.match(line)
    if bullet:
        return "• " + inline_literal(bullet.group(2))
    numbered = _NUMBERED.match(line)
    if numbered:
        return f"{numbered.group(1)}\\{numbered.group(2)} " + inline_literal(numbered.group(3))
    return inline_literal(line)


def _prose_block(lines: list[str]) -> list[str]:
    """Paragraphs as readable text: hard-wrapped lines re-flowed (as Markdown itself would), list
    items and headings kept on lines of their own, tables as tables, blank lines as paragraph breaks."""
    out: list[str] = []
    for start in range(len(lines) - 1):
        if lines[start].strip().startswith("|") and is_table(lines[start:start + 2]):
            end = start + 2
            while end < len(lines) and lines[end].strip() and "|" in lines[end]:
                end += 1
            head = _prose_block(lines[:start])
            return [*head, *literal_table(lines[start:end]), "", *_prose_block(lines[end:])]
    paragraph: list[str] = []  # visual lines of the current paragraph

    def flush() -> None:
        if paragraph:
            rendered = [_visual_line(line) for line in paragraph]
            out.extend(line + "\\" for line in rendered[:-1])
            out.append(rendered[-1])
            out.append("")
            paragraph.clear()

    for raw in lines:
        line = " ".join(raw.split())
        if not line:
            flush()
        elif paragraph and not _STRUCTURAL.match(line) and not paragraph[-1].startswith("|"):
            paragraph[-1] += " " + line  # a soft-wrapped continuation
        else:
            paragraph.append(line)
    flush()
    return out


def literal_markdown(text: str) -> str:
    """Render a document chunk as literal text: escaped prose, code in safe fences."""
    out: list[str] = []
    prose: list[str] = []
    lines = str(text).replace("\r\n", "\n").replace("\r", "\n").split("\n")
    i = 0
    while i < len(lines):
        match = FENCE_LINE.match(lines[i])
        if not match:
            prose.append(lines[i])
            i += 1
            continue
        out.extend(_prose_block(prose))
        prose = []
        opener, info = match.group(1), match.group(2)
        code: list[str] = []
        i += 1
        while i < len(lines):
            close = FENCE_LINE.match(lines[i])
            if close and close.group(1)[0] == opener[0] and len(close.group(1)) >= len(opener) \
                    and not close.group(2).strip():
                i += 1
                break
            code.append(lines[i])
            i += 1
        out.extend(_code_block(code, info))  # an unclosed fence (chunk cut mid-code) is closed here
        out.append("")
    out.extend(_prose_block(prose))
    while out and not out[-1]:
        out.pop()
    return "\n".join(out)


def quote(markdown: str) -> str:
    """Put Markdown inside a blockquote (each line prefixed, blank lines kept inside the quote)."""
    return "\n".join(("> " + line) if line else ">" for line in markdown.split("\n"))


# -- model-written answers ----------------------------------------------------------------------
# An LLM answer is Markdown and is rendered as such, with two repairs: a fence the model left open
# (the stream was cut, or the model forgot) is closed, so what follows it (the sources and notices)
# is not swallowed into a code box; and raw HTML outside code is escaped, so `<details>` or
# `<script>` in an answer shows as written instead of vanishing (the UI renders no raw HTML).

_ANY_FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})(.*)$")
_RAW_HTML = re.compile(r"(?<!\\)<(?=[A-Za-z/!?])")


def close_fences(text: str) -> str:
    """`text` with a closing line added for a code fence left open at its end."""
    opener: tuple[str, str] | None = None  # (indent, fence)
    for line in text.split("\n"):
        match = _ANY_FENCE.match(line)
        if not match:
            continue
        indent, fence, info = match.groups()
        if opener is None:
            if not (fence[0] == "`" and "`" in info):  # a backtick fence's info string has no backticks
                opener = (indent, fence)
        elif fence[0] == opener[1][0] and len(fence) >= len(opener[1]) and not info.strip():
            opener = None
    if opener is None:
        return text
    return text.rstrip("\n") + "\n" + opener[0] + opener[1]


def _escape_html_outside_code(line: str) -> str:
    out, pos = [], 0
    for m in _CODE_SPAN.finditer(line):
        out.append(_RAW_HTML.sub(r"\\<", line[pos:m.start()]))
        out.append(m.group(0))
        pos = m.end()
    out.append(_RAW_HTML.sub(r"\\<", line[pos:]))
    return "".join(out)


def answer_text(text: str) -> str:
    """A model's Markdown answer made safe to render and to append to: HTML escaped outside code,
    an unclosed fence closed."""
    lines, fence = [], None
    for line in text.split("\n"):
        match = _ANY_FENCE.match(line)
        if match:
            mark = match.group(2)
            if fence is None:
                fence = mark
            elif mark[0] == fence[0] and len(mark) >= len(fence) and not match.group(3).strip():
                fence = None
            lines.append(line)
        else:
            lines.append(line if fence else _escape_html_outside_code(line))
    return close_fences("\n".join(lines))
