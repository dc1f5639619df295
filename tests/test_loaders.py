"""Loaders: every supported type, and every bad input a user can hand us, on real files."""

from __future__ import annotations

import codecs
import hashlib
import io
import random
import tomllib
from pathlib import Path

import pytest

from assistant.retrieval.errors import IngestError
from assistant.retrieval.filters import DOCUMENT_TYPES
from assistant.retrieval.loaders import FORMATS, SUPPORTED_SUFFIXES, load_file
from assistant.retrieval.types import Block
from tests.fakes.documents import make_pdf

# --------------------------------------------------------------------------------------------
# helpers




def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def texts(blocks: list[Block], kind: str | None = None) -> list[str]:
    return [b.text for b in blocks if kind is None or b.kind == kind]


def ingest_error(path: Path) -> str:
    with pytest.raises(IngestError) as info:
        load_file(path)
    message = str(info.value)
    assert "\n" not in message, "user-facing errors are one line"
    assert path.name in message, "the message names the file"
    return message


# --------------------------------------------------------------------------------------------
# bad input


def test_unknown_suffix_lists_supported_types(tmp_path: Path) -> None:
    message = ingest_error(write(tmp_path, "slides.pptx", "hello"))
    assert "unsupported file type '.pptx'" in message
    for suffix in SUPPORTED_SUFFIXES:
        assert suffix in message


def test_no_suffix(tmp_path: Path) -> None:
    assert "(no extension)" in ingest_error(write(tmp_path, "README", "hello"))


def test_missing_file(tmp_path: Path) -> None:
    assert "cannot read" in ingest_error(tmp_path / "gone.md")


@pytest.mark.parametrize("name", ["empty.md", "empty.txt", "empty.html", "empty.pdf"])
def test_empty_file(tmp_path: Path, name: str) -> None:
    assert "empty file" in ingest_error(write(tmp_path, name, b""))


@pytest.mark.parametrize("name", ["blank.md", "blank.txt", "blank.html"])
def test_whitespace_only_file(tmp_path: Path, name: str) -> None:
    assert "empty file" in ingest_error(write(tmp_path, name, " \n\t\r\n  \n"))


@pytest.mark.parametrize("name", ["image.txt", "image.md", "image.html"])
def test_nul_bytes_mean_binary(tmp_path: Path, name: str) -> None:
    assert "binary" in ingest_error(write(tmp_path, name, b"GIF89a\x00\x01\x02 some text"))


def test_mostly_control_characters_mean_binary(tmp_path: Path) -> None:
    rng = random.Random(7)
    noise = bytes(rng.choice([*range(1, 9), *range(14, 32)]) for _ in range(400))
    assert "non-printable" in ingest_error(write(tmp_path, "noise.txt", noise + b" a few words"))


def test_random_bytes_with_text_suffix_are_binary(tmp_path: Path) -> None:
    rng = random.Random(3)
    noise = bytes(rng.randrange(1, 256) for _ in range(4000))
    assert "binary" in ingest_error(write(tmp_path, "blob.md", noise))


def test_front_matter_only_markdown_has_no_text(tmp_path: Path) -> None:
    path = write(tmp_path, "meta.md", "---\ntitle: Nothing here\n---\n\n")
    assert "no extractable text" in ingest_error(path)


def test_html_with_only_scripts_has_no_text(tmp_path: Path) -> None:
    path = write(tmp_path, "app.html", "<html><head><script>var a = 1;</script></head><body><div></div></body>")
    assert "no extractable text" in ingest_error(path)


def test_html_with_only_navigation_has_no_main_content(tmp_path: Path) -> None:
    path = write(tmp_path, "app.html", "<html><head><script>var a = 1;</script></head><body><nav>Menu</nav></body>")
    message = ingest_error(path)
    assert "no main content" in message and "\n" not in message


def test_corrupt_pdf(tmp_path: Path) -> None:
    rng = random.Random(1)
    noise = bytes(rng.randrange(256) for _ in range(2000))
    assert "corrupt or unreadable PDF" in ingest_error(write(tmp_path, "broken.pdf", noise))


def test_truncated_pdf(tmp_path: Path) -> None:
    pdf = make_pdf([["Hello world"]])
    assert "PDF" in ingest_error(write(tmp_path, "cut.pdf", pdf[:60]))


def test_pdf_without_text_layer(tmp_path: Path) -> None:
    message = ingest_error(write(tmp_path, "scan.pdf", make_pdf([[], []])))
    assert "scanned PDF? no text to index" in message


def test_encrypted_pdf(tmp_path: Path) -> None:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(make_pdf([["Top secret text"]]))))
    writer.encrypt(user_password="secret", owner_password="owner", algorithm="AES-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    assert "encrypted PDF" in ingest_error(write(tmp_path, "locked.pdf", buffer.getvalue()))


def test_pdf_encrypted_with_empty_user_password_loads(tmp_path: Path) -> None:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(make_pdf([["Readable by anyone"]]))))
    writer.encrypt(user_password="", owner_password="owner", algorithm="AES-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    doc = load_file(write(tmp_path, "perms.pdf", buffer.getvalue()))
    assert texts(doc.blocks) == ["Readable by anyone"]


# --------------------------------------------------------------------------------------------
# encodings


def test_cp1252_text_is_decoded_not_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, "menu.txt", "Café crème € 5".encode("cp1252"))
    doc = load_file(path)
    assert texts(doc.blocks) == ["Café crème € 5"]
    assert doc.metadata["encoding"] == "cp1252"


def test_bytes_undefined_in_cp1252_fall_back_to_latin1(tmp_path: Path) -> None:
    doc = load_file(write(tmp_path, "odd.txt", b"na\xefve \x81 text"))
    assert doc.metadata["encoding"] == "latin-1"
    assert texts(doc.blocks)[0].startswith("naïve")


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
def test_utf16_with_bom(tmp_path: Path, codec: str) -> None:
    bom = codecs.BOM_UTF16_LE if codec.endswith("le") else codecs.BOM_UTF16_BE
    path = write(tmp_path, "notes.md", bom + "# Überschrift\n\nGrüße aus Köln.\n".encode(codec))
    doc = load_file(path)
    assert doc.title == "Überschrift"
    assert texts(doc.blocks, "text") == ["Grüße aus Köln."]
    assert doc.metadata["encoding"] == "utf-16"


def test_utf8_bom_is_stripped(tmp_path: Path) -> None:
    doc = load_file(write(tmp_path, "bom.md", codecs.BOM_UTF8 + b"# Title\n\nBody."))
    assert doc.title == "Title"
    assert "encoding" not in doc.metadata


def test_html_meta_charset_is_used_when_not_utf8(tmp_path: Path) -> None:
    html = '<html><head><meta charset="iso-8859-15"><title>Prix</title></head><body><p>10 €</p></body></html>'
    doc = load_file(write(tmp_path, "prix.html", html.encode("iso-8859-15")))
    assert texts(doc.blocks) == ["10 €"]
    assert doc.metadata["encoding"] == "iso8859-15"


# --------------------------------------------------------------------------------------------
# plain text


def test_txt_paragraphs_and_document_fields(tmp_path: Path) -> None:
    raw = "First paragraph,\nwrapped.\n\n\n  Second one.  \n \nThird.\r\nStill third.\n"
    path = write(tmp_path, "release_notes-v2.txt", raw)
    doc = load_file(path)
    assert texts(doc.blocks) == ["First paragraph,\nwrapped.", "Second one.", "Third.\nStill third."]
    assert all(b.kind == "text" and b.page is None for b in doc.blocks)
    assert doc.source == path.resolve().as_posix()
    assert doc.content_hash == hashlib.sha256(raw.encode()).hexdigest()
    assert doc.metadata == {"type": "txt", "filename": "release_notes-v2.txt"}
    assert doc.title == "Release notes v2"
    assert doc.url is None


def test_suffix_is_case_insensitive(tmp_path: Path) -> None:
    assert load_file(write(tmp_path, "SHOUT.TXT", "Loud text.")).metadata["type"] == "txt"


# --------------------------------------------------------------------------------------------
# Markdown

MARKDOWN = """\
---
title: "Front Matter Title"
url: https://docs.example.com/guide
tags: [setup, install]
layout: page
---

Setext Title
============

Intro paragraph that
spans two lines.

Section Two
-----------

```python
# this is a comment, not a heading
def f():
    return "# nor this"
```

~~~
## still code
~~~

- first item
- second item

- third item after a blank line
  continued

> quoted # text

| a | b |
|---|---|
| 1 | 2 |

### ATX heading ###

***

Closing words.
"""


def test_markdown_structure(tmp_path: Path) -> None:
    doc = load_file(write(tmp_path, "guide.md", MARKDOWN))
    kinds = [(b.kind, b.level, b.text) for b in doc.blocks]
    assert kinds == [
        ("heading", 1, "Setext Title"),
        ("text", 0, "Intro paragraph that\nspans two lines."),
        ("heading", 2, "Section Two"),
        ("code", 0, '```python\n# this is a comment, not a heading\ndef f():\n    return "# nor this"\n```'),
        ("code", 0, "~~~\n## still code\n~~~"),
        ("text", 0, "- first item\n- second item\n\n- third item after a blank line\n  continued"),
        ("text", 0, "> quoted # text"),
        ("text", 0, "| a | b |\n|---|---|\n| 1 | 2 |"),
        ("heading", 3, "ATX heading"),
        ("text", 0, "Closing words."),
    ]


def test_markdown_front_matter(tmp_path: Path) -> None:
    doc = load_file(write(tmp_path, "guide.md", MARKDOWN))
    assert doc.title == "Setext Title"  # the first H1 wins over front matter
    assert doc.url == "https://docs.example.com/guide"
    assert doc.metadata["type"] == "md"
    assert doc.metadata["filename"] == "guide.md"
    assert doc.metadata["title"] == "Front Matter Title"
    assert doc.metadata["tags"] == ["setup", "install"]
    assert doc.metadata["layout"] == "page"


def test_markdown_title_falls_back_to_front_matter_then_filename(tmp_path: Path) -> None:
    fm = "---\ntitle: From Front Matter\ntags:\n  - a\n  - 'b'\n---\n## Not an H1\n\nBody."
    doc = load_file(write(tmp_path, "x.md", fm))
    assert doc.title == "From Front Matter"
    assert doc.metadata["tags"] == ["a", "b"]
    assert doc.url is None
    doc = load_file(write(tmp_path, "getting-started.markdown", "Just text."))
    assert doc.title == "Getting started"


def test_markdown_thematic_break_at_top_is_not_front_matter(tmp_path: Path) -> None:
    doc = load_file(write(tmp_path, "hr.md", "---\nThis is a sentence, not a key.\n---\n\nMore."))
    assert "This is a sentence, not a key." in texts(doc.blocks)[0]
    assert "title" not in doc.metadata


def test_markdown_fence_edge_cases(tmp_path: Path) -> None:
    md = "````\n```\ninner\n```\n````\n\n```\n# unclosed fence\nstill code"
    doc = load_file(write(tmp_path, "fences.md", md))
    assert [b.kind for b in doc.blocks] == ["code", "code"]
    assert doc.blocks[0].text == "````\n```\ninner\n```\n````"
    assert doc.blocks[1].text == "```\n# unclosed fence\nstill code\n```"  # closed so it renders
    assert not any(b.kind == "heading" for b in doc.blocks)


def test_markdown_indented_code_and_hashtags(tmp_path: Path) -> None:
    md = "# Title\n\n#hashtag is text\n\n    indented code\n    # not a heading\n\nafter"
    doc = load_file(write(tmp_path, "ind.md", md))
    assert [(b.kind, b.text) for b in doc.blocks] == [
        ("heading", "Title"),
        ("text", "#hashtag is text"),
        ("code", "```\nindented code\n# not a heading\n```"),
        ("text", "after"),
    ]


def test_markdown_list_with_lead_in_is_not_a_setext_heading(tmp_path: Path) -> None:
    doc = load_file(write(tmp_path, "l.md", "Steps:\n- one\n- two\n---\n\nEnd."))
    assert [b.kind for b in doc.blocks] == ["text", "text"]
    assert doc.blocks[0].text == "Steps:\n- one\n- two"


# --------------------------------------------------------------------------------------------
# HTML

HTML = """<!DOCTYPE html>
<html>
<head>
  <meta charset="utf-8">
  <title>  Caf&eacute; &amp; Co &mdash; Docs </title>
  <link rel="stylesheet" href="x.css">
  <link rel="canonical" href="https://example.com/cafe">
  <meta property="og:url" content="https://example.com/og">
  <style>body { color: red; } .SECRET_STYLE {}</style>
  <script>var SECRET_SCRIPT = "<p>not text</p>";</script>
</head>
<body>
  <header><a href="/">SECRET_HEADER</a></header>
  <nav><ul><li>SECRET_NAV</li></ul></nav>
  <div role="navigation">SECRET_ROLE_NAV</div>
  <!-- SECRET_COMMENT -->
  <main>
    <article>
      <header><h1>Welcome   to the&nbsp;caf&eacute;</h1></header>
      <p>Fish &amp; chips &lt;today&gt; cost &#8364;5 &#x2014; cheap.
         Second   line.</p>
      <h2>Menu</h2>
      <ul><li>Coffee<li>Tea</ul>
      <ol><li>first</li><li>second</li></ol>
      <pre><code class="language-python">def brew():
    return "&lt;coffee&gt;"</code></pre>
      <table><tr><th>Item</th><th>Price</th></tr><tr><td>Cake</td><td>3</td></tr></table>
      <blockquote>Best in town.</blockquote>
      <div>Loose div text <span>with span</span></div>
      <p hidden>SECRET_HIDDEN</p>
      <form><label>SECRET_FORM</label></form>
      <svg><title>SECRET_SVG</title><text>SECRET_SVG_TEXT</text></svg>
      <template><p>SECRET_TEMPLATE</p></template>
      <noscript>SECRET_NOSCRIPT</noscript>
      <aside>SECRET_ASIDE</aside>
      <h3>Unclosed paragraphs</h3>
      <p>One<p>Two
    </article>
  </main>
  <footer>SECRET_FOOTER</footer>
</body>
</html>
"""


def test_html_drops_chrome_and_keeps_content(tmp_path: Path) -> None:
    doc = load_file(write(tmp_path, "cafe.html", HTML))
    everything = "\n".join(b.text for b in doc.blocks)
    assert "SECRET" not in everything
    assert "color: red" not in everything
    assert [(b.kind, b.level, b.text) for b in doc.blocks] == [
        ("heading", 1, "Welcome to the café"),
        ("text", 0, "Fish & chips <today> cost €5 — cheap. Second line."),
        ("heading", 2, "Menu"),
        ("text", 0, "- Coffee\n- Tea"),
        ("text", 0, "1. first\n2. second"),
        ("code", 0, '```python\ndef brew():\n    return "<coffee>"\n```'),
        ("text", 0, "Item | Price\nCake | 3"),
        ("text", 0, "Best in town."),
        ("text", 0, "Loose div text with span"),
        ("heading", 3, "Unclosed paragraphs"),
        ("text", 0, "One"),
        ("text", 0, "Two"),
    ]


def test_html_title_and_canonical_url(tmp_path: Path) -> None:
    doc = load_file(write(tmp_path, "cafe.htm", HTML))
    assert doc.title == "Café & Co — Docs"
    assert doc.url == "https://example.com/cafe"
    assert doc.metadata == {"type": "html", "filename": "cafe.htm"}


def test_html_og_url_and_h1_title_fallbacks(tmp_path: Path) -> None:
    html = (
        '<html><head><meta property="og:url" content="https://example.com/page">'
        '<link rel="canonical" href="/relative-is-useless"></head>'
        "<body><h1>Heading Title</h1><p>Text.</p></body></html>"
    )
    doc = load_file(write(tmp_path, "p.html", html))
    assert doc.url == "https://example.com/page"
    assert doc.title == "Heading Title"
    doc = load_file(write(tmp_path, "plain_page.html", "<p>Only text.</p>"))
    assert doc.title == "Plain page"
    assert doc.url is None


def test_html_pre_without_code_and_nested_lists(tmp_path: Path) -> None:
    html = "<pre>\n$ make\n  ```\n</pre><ul><li>a<ul><li>b</li></ul></li><li>c</li></ul>"
    doc = load_file(write(tmp_path, "n.html", html))
    assert doc.blocks[0] == Block("code", "````\n$ make\n  ```\n````")
    assert doc.blocks[1] == Block("text", "- a\n  - b\n- c")


# --------------------------------------------------------------------------------------------
# PDF


def test_pdf_pages_paragraphs_and_hyphenation(tmp_path: Path) -> None:
    pdf = make_pdf(
        [
            ["Annual Report 2024", "", "The first paragraph is an exam-", "ple of wrapped text", "that continues."],
            ["Page two text about Jean-", "Paul.", "", "A second paragraph.", "", "- item one", "- item two"],
            [],
        ],
        title="Annual Report (final)",
    )
    doc = load_file(write(tmp_path, "report.pdf", pdf))
    assert [(b.page, b.text) for b in doc.blocks] == [
        (1, "Annual Report 2024"),
        (1, "The first paragraph is an example of wrapped text that continues."),
        (2, "Page two text about Jean-Paul."),
        (2, "A second paragraph."),
        (2, "- item one\n- item two"),
    ]
    assert all(b.kind == "text" for b in doc.blocks)
    assert doc.title == "Annual Report (final)"
    assert doc.metadata == {"type": "pdf", "filename": "report.pdf", "pages": 3}
    assert doc.content_hash == hashlib.sha256(pdf).hexdigest()


def test_pdf_title_from_first_line_without_metadata(tmp_path: Path) -> None:
    doc = load_file(write(tmp_path, "untitled.pdf", make_pdf([["", "Quarterly Numbers", "Body text here."]])))
    assert doc.title == "Quarterly Numbers"


# --------------------------------------------------------------------------------------------
# the registry


def test_each_format_is_one_registry_entry_with_its_own_suffixes_and_kind() -> None:
    assert [f.kind for f in FORMATS] == list(DOCUMENT_TYPES)  # the `type=` filter knows every kind
    assert len(set(SUPPORTED_SUFFIXES)) == len(SUPPORTED_SUFFIXES)  # one loader per suffix
    assert all(s.startswith(".") and s == s.lower() for s in SUPPORTED_SUFFIXES)
    assert all(f.mime_types and f.suffixes for f in FORMATS)


def test_every_suffix_is_accepted_for_upload_under_one_of_its_formats_mime_types() -> None:
    config = Path(__file__).resolve().parents[1] / ".chainlit" / "config.toml"
    accept = tomllib.loads(config.read_text())["features"]["spontaneous_file_upload"]["accept"]
    for fmt in FORMATS:
        for suffix in fmt.suffixes:
            assert any(suffix in accept.get(mime, []) for mime in fmt.mime_types), (fmt.kind, suffix)


def test_a_file_goes_to_the_loader_of_its_suffix_whatever_the_case(tmp_path: Path) -> None:
    for fmt, name, content in [("md", "A.MD", "# A\n\ntext"), ("txt", "b.Txt", "text"),
                               ("html", "c.HTM", "<p>text</p>"), ("pdf", "d.PDF", make_pdf([["text"]]))]:
        assert load_file(write(tmp_path, name, content)).metadata["type"] == fmt
