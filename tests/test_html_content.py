"""Main-content HTML extraction on the page shapes of real manuals (Sphinx, DocBook, AsciiDoc man
pages), plus the bad input a crawler meets: navigation-only, malformed, table-only, empty, huge and
non-UTF-8 pages. The markup below copies each generator's real structure (class names, nesting)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from assistant.retrieval.chunking import chunk_document
from assistant.retrieval.errors import IngestError
from assistant.retrieval.loaders import load_html
from assistant.retrieval.types import section_path

ROOT = Path(__file__).resolve().parents[1]


def everything(doc) -> str:
    return "\n".join(b.text for b in doc.blocks)


SPHINX = """<!DOCTYPE html><html><head><meta charset="utf-8">
<title>json — JSON encoder and decoder — Python 3.11.2 documentation</title>
<link rel="canonical" href="https://docs.python.org/3/library/json.html"></head>
<body>
<div class="mobile-nav"><nav class="nav-content" role="navigation"><a href="/">MOBILE_NAV</a></nav></div>
<div class="related" role="navigation" aria-label="related navigation"><h3>Navigation</h3>
<ul><li class="right"><a href="genindex.html">index</a></li><li><a href="x.html">RELATED_BAR</a> &#187;</li></ul></div>
<div class="document"><div class="documentwrapper"><div class="bodywrapper"><div class="body" role="main">
<section id="module-json"><h1>json — JSON encoder and decoder<a class="headerlink" href="#module-json">¶</a></h1>
<p><strong>Source code:</strong> Lib/json/__init__.py</p>
<p>JSON (JavaScript Object Notation) is a lightweight data interchange format inspired by JavaScript.</p>
<div class="highlight-python3 notranslate"><div class="highlight">
<pre><span></span><span class="gp">&gt;&gt;&gt; </span>import json
<span class="gp">&gt;&gt;&gt; </span>json.dumps([1, 2])
'[1, 2]'
</pre></div></div>
<section id="basic-usage"><h2>Basic Usage<a class="headerlink" href="#basic-usage">¶</a></h2>
<dl class="py function"><dt class="sig sig-object py" id="json.dump"><span class="pre">json.dump</span>(obj, fp)</dt>
<dd><p>Serialize obj as a JSON formatted stream to fp.</p>
<ul class="simple"><li><p>skipkeys: skip keys that are not basic types</p></li><li><p>indent: pretty-print</p></li></ul>
</dd></dl></section></section>
<div class="clearer"></div></div></div></div>
<div class="sphinxsidebar" role="navigation" aria-label="main navigation"><div class="sphinxsidebarwrapper">
<h3>Table of Contents</h3><ul><li><a href="#">SIDEBAR_TOC</a></li></ul>
<div role="note" aria-label="source link"><h3>This Page</h3><ul class="this-page-menu"><li>SIDEBAR_BUG</li></ul></div>
<div id="searchbox" role="search"><h3>Quick search</h3><form><input type="text" name="q"></form></div></div></div>
<div class="clearer"></div></div>
<div class="footer">&copy; <a href="/copyright.html">Copyright</a> 2001-2023, FOOTER_PSF.</div>
</body></html>"""


def test_sphinx_page_keeps_content_and_drops_chrome() -> None:
    doc = load_html(SPHINX.encode(), "https://docs.example.org/library/json.html")
    text = everything(doc)
    for chrome in ("MOBILE_NAV", "RELATED_BAR", "SIDEBAR", "FOOTER_PSF", "Quick search", "¶"):
        assert chrome not in text
    assert doc.title == "json — JSON encoder and decoder"  # the H1, not "... — Python 3.11.2 documentation"
    assert doc.url == "https://docs.python.org/3/library/json.html"
    kinds = [(b.kind, b.text.splitlines()[0]) for b in doc.blocks]
    assert ("heading", "Basic Usage") in kinds
    code = [b.text for b in doc.blocks if b.kind == "code"]
    assert code == ["```\n>>> import json\n>>> json.dumps([1, 2])\n'[1, 2]'\n```"]  # whole, fenced
    assert "- skipkeys: skip keys that are not basic types\n- indent: pretty-print" in text
    for chunk in chunk_document(doc):  # the H1 is the title: heading paths do not repeat it
        assert doc.title not in section_path(doc.title, chunk.heading_path)


MAN_PAGE = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.1//EN" "http://www.w3.org/TR/xhtml11/DTD/xhtml11.dtd">
<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en"><head>
<meta http-equiv="Content-Type" content="application/xhtml+xml; charset=UTF-8" />
<title>git-bisect(1)</title></head>
<body class="manpage">
<div id="header">
<h1>
git-bisect(1) Manual Page
</h1>
<h2>NAME</h2>
<div class="sectionbody">
<p>git-bisect -
   Use binary search to find the commit that introduced a bug
</p>
</div>
</div>
<div id="content">
<div class="sect1"><h2 id="_synopsis">SYNOPSIS</h2><div class="sectionbody">
<div class="verseblock">
<pre class="content"><em>git bisect</em> &lt;subcommand&gt; &lt;options&gt;</pre></div></div></div>
<div class="sect1"><h2 id="_description">DESCRIPTION</h2><div class="sectionbody">
<div class="paragraph">
<p>The command takes various subcommands, and different options depending on the subcommand.</p></div>
<div class="listingblock"><div class="content"><pre><code>$ git bisect start
$ git bisect bad                 # Current version is bad</code></pre></div></div>
</div></div>
<div class="sect1"><h2 id="_git">GIT</h2><div class="sectionbody">
<div class="paragraph"><p>Part of the <a href="git.html">git(1)</a> suite</p></div></div></div>
</div>
<div id="footnotes"><hr /></div>
<div id="footer"><div id="footer-text">
Last updated
 2024-05-31 00:35:55 UTC
</div></div>
</body></html>"""


def test_man_page_keeps_name_line_case_and_drops_suite_footer() -> None:
    doc = load_html(MAN_PAGE.encode(), Path("git-bisect.html"))
    text = everything(doc)
    assert "git-bisect - Use binary search to find the commit that introduced a bug" in text  # never "Git-bisect"
    assert "Part of the" not in text and "Last updated" not in text
    assert [b.text for b in doc.blocks if b.kind == "heading"] == [
        "git-bisect(1) Manual Page", "NAME", "SYNOPSIS", "DESCRIPTION",  # "GIT" had only the footer
    ]
    assert doc.title == "git-bisect(1) Manual Page"
    assert "```\n$ git bisect start\n$ git bisect bad                 # Current version is bad\n```" in text
    paths = {tuple(section_path(doc.title, c.heading_path)) for c in chunk_document(doc)}
    assert all(not p or p[0] in ("NAME", "SYNOPSIS", "DESCRIPTION") for p in paths), paths


DOCBOOK = """<html><head><meta http-equiv="Content-Type" content="text/html; charset=ISO-8859-1">
<title>Chapter 3. Backups</title><meta name="generator" content="DocBook XSL Stylesheets V1.79.2"></head>
<body><div class="navheader"><table width="100%" summary="Navigation header">
<tr><th colspan="3" align="center">Chapter 3. Backups</th></tr>
<tr><td width="20%" align="left"><a accesskey="p" href="ch02.html">Prev</a> </td><th width="60%" align="center"> </th>
<td width="20%" align="right"> <a accesskey="n" href="ch04.html">Next</a></td></tr></table><hr></div>
<div class="chapter"><div class="titlepage"><div><div>
<h1 class="title"><a name="backups"></a>Chapter 3. Backups</h1></div></div></div>
<p>Run the backup tool every night; it copies the data directory to the archive host and keeps fourteen
copies, deleting the oldest one first.</p>
<div class="table"><p class="title"><b>Table 3.1. Retention</b></p><div class="table-contents">
<table summary="Retention" border="1"><thead><tr><th>Copy</th><th>Kept for</th></tr></thead>
<tbody><tr><td>Daily</td><td>14 days</td></tr><tr><td>Monthly</td><td>1 year</td></tr></tbody></table></div></div></div>
<div class="navfooter"><hr><table width="100%" summary="Navigation footer">
<tr><td width="40%" align="left"><a accesskey="p" href="ch02.html">Prev</a> </td>
<td width="20%" align="center"><a accesskey="u" href="index.html">Up</a></td>
<td width="40%" align="right"> <a accesskey="n" href="ch04.html">Next</a></td></tr>
<tr><td width="40%" align="left" valign="top">Chapter 2. Install </td>
<td width="20%" align="center"><a accesskey="h" href="index.html">Home</a></td>
<td width="40%" align="right" valign="top"> Chapter 4. Restore</td></tr></table></div>
</body></html>"""


def test_docbook_prev_up_home_next_tables_are_dropped() -> None:
    doc = load_html(DOCBOOK.encode("iso-8859-1"), Path("ch03.html"))
    text = everything(doc)
    assert "Prev" not in text and "Home" not in text and "Chapter 4. Restore" not in text
    assert "Copy | Kept for\nDaily | 14 days\nMonthly | 1 year" in text
    assert doc.title == "Chapter 3. Backups"


def test_cookie_banner_and_breadcrumbs_are_dropped() -> None:
    html = (
        "<html><body><div id='cookie-banner'>We use COOKIES_BANNER. <button>Accept</button></div>"
        "<nav aria-label='breadcrumb'><ol class='breadcrumb'><li>Docs</li><li>CRUMB_GUIDE</li></ol></nav>"
        "<div class='breadcrumbs'>Home » CRUMB_TWO</div>"
        "<main><h1>Guide</h1><p>Install the package and start the server with one command.</p></main></body></html>"
    )
    doc = load_html(html.encode(), "https://example.com/guide/")
    assert "COOKIES" not in everything(doc) and "CRUMB" not in everything(doc)
    assert "Install the package" in everything(doc)


def test_page_of_only_navigation_is_one_line_error() -> None:
    html = (
        "<html><head><title>Site</title></head><body><header><a href='/'>Home</a></header>"
        "<nav><ul><li><a href='/a'>A</a></li><li><a href='/b'>B</a></li></ul></nav>"
        "<footer>© 2026 Example</footer></body></html>"
    )
    with pytest.raises(IngestError) as err:
        load_html(html.encode(), "https://example.com/")
    assert "no main content" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    "html", ["<html><body></body></html>", "<html><head><title>x</title></head></html>", "<!-- -->"]
)
def test_empty_body_is_one_line_error(html: str) -> None:
    with pytest.raises(IngestError) as err:
        load_html(html.encode(), Path("empty.html"))
    assert "no extractable text" in str(err.value)


def test_malformed_html_still_gives_its_text() -> None:
    html = (
        "<html><head><title>Broken <b>page</title><body><div class='content'><h2>Setup<p>First unclosed "
        "paragraph<p>Second <i>with <b>misnested</i> tags</b></div></span></div><table><tr><td>cell"
        "<li>stray item<pre>code <x y='>'>inside</pre><p attr=\"unterminated>Last words here"
    )
    doc = load_html(html.encode(), Path("broken.html"))
    text = everything(doc)
    assert "First unclosed paragraph" in text and "Second with misnested tags" in text
    assert "Last words here" in text


def test_page_whose_main_content_is_a_table() -> None:
    rows = "".join(f"<tr><td>option{i}</td><td>default {i}</td><td>what option {i} changes</td></tr>" for i in range(8))
    head = "<tr><th>Name</th><th>Default</th><th>Meaning</th></tr>"
    html = f"<html><body><nav><a href='/'>Home</a></nav><table>{head}{rows}</table></body></html>"
    doc = load_html(html.encode(), Path("options.html"))
    lines = everything(doc).splitlines()
    assert lines[0] == "Name | Default | Meaning" and lines[-1] == "option7 | default 7 | what option 7 changes"
    assert "Home" not in lines


def test_plain_page_lists_are_content_but_bare_link_lists_are_not() -> None:
    html = (
        "<body><ul><li><a href='/'>Home</a></li><li><a href='/docs'>Docs</a></li></ul>"
        "<p>Steps to follow before the upgrade starts:</p>"
        "<ul><li>stop the server</li><li>back up the data</li></ul></body>"
    )
    doc = load_html(html.encode(), Path("steps.html"))
    assert [b.text for b in doc.blocks] == [
        "Steps to follow before the upgrade starts:", "- stop the server\n- back up the data"
    ]


@pytest.mark.slow
def test_huge_page_loads_whole() -> None:
    para = "<p>Paragraph {i} explains one more detail of the configuration file and its defaults.</p>"
    html = "<html><body><main>" + "".join(para.format(i=i) for i in range(40_000)) + "</main></body></html>"
    assert len(html) > 3_000_000
    doc = load_html(html.encode(), Path("huge.html"))
    assert len(doc.blocks) == 40_000 and doc.blocks[-1].text.startswith("Paragraph 39999 ")


def test_charset_from_server_and_from_meta() -> None:
    body = "<html><body><p>Привет, мир: документация на русском.</p></body></html>"
    assert "Привет" in everything(load_html(body.encode("cp1251"), "https://example.ru/", charset="windows-1251"))
    meta = '<html><head><meta charset="shift_jis"></head><body><p>日本語のドキュメントです。</p></body></html>'
    doc = load_html(meta.encode("shift_jis"), Path("ja.html"))
    assert everything(doc) == "日本語のドキュメントです。" and doc.metadata["encoding"] == "shift_jis"


def test_relative_canonical_resolves_against_a_fetched_page_only() -> None:
    html = "<html><head><link rel='canonical' href='/guide/start'></head><body><p>Start here.</p></body></html>"
    assert load_html(html.encode(), "https://example.com/guide/start?ref=nav").url == "https://example.com/guide/start"
    assert load_html(html.encode(), Path("start.html")).url is None


@pytest.mark.slow
def test_extraction_library_is_not_loaded_by_the_chat_side() -> None:
    code = (
        "import sys, assistant.retrieval, assistant.retrieval.loaders, assistant.retrieval.search;"
        "assert 'resiliparse' not in sys.modules, 'resiliparse imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
