"""Main-content HTML extraction: candidate libraries compared on real documentation pages.

Two real manuals: docs-python (Sphinx, `../shared/data/docs-python/pages`) and git's HTML
manual (AsciiDoc man pages, Debian's `git-doc`: `/usr/share/doc/git/html`, override with
`--git-dir`). For each page a *gold* main content is cut out by hand-written rules that know the
generator (Sphinx: `div[role=main]`; AsciiDoc: the NAME line plus `#content` without the closing
"GIT / Part of the git(1) suite" section), and every extractor is scored on:

- recall: share of the gold's word tokens (a multiset) that the output keeps;
- precision: share of the output's tokens that are gold (the rest is chrome that leaked in);
- code kept: share of the gold's `<pre>` blocks found whole (whitespace-normalised) in the output;
- ms/page (median) and memory (RSS after import, peak RSS after all pages), each extractor in its
  own process so one's imports do not count against another.

Run: `nice -n 10 python -m bench.html_extract [--append docs/BENCHMARKS.md]`. Needs lxml for the
gold cut (`pip install lxml trafilatura==2.3.1 readability-lxml==0.9 justext==3.0.2` for the whole
comparison; missing candidates are skipped) and Debian's git-doc for the second corpus.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS_PYTHON = ROOT.parent / "shared" / "data" / "docs-python" / "pages"
if not DOCS_PYTHON.is_dir():
    DOCS_PYTHON = Path("/work/shared/data/docs-python/pages")
GIT_DOC = Path("/usr/share/doc/git/html")
OLD_LOADER_COMMIT = "3d68f81"  # the last commit with the hand-written HTML tag dropper
# Candidates compared (bench only; the product needs only resiliparse, in requirements.txt).
PIP = {"trafilatura": "trafilatura==2.3.1", "readability": "readability-lxml==0.9", "justext": "justext==3.0.2",
       "resiliparse": "resiliparse==2.0.0", "old-loader": "", "product": ""}
EXTRACTORS = ("old-loader", "product", "trafilatura", "readability", "justext", "resiliparse")
_WORD = re.compile(r"\w+")


def tokens(text: str) -> Counter[str]:
    return Counter(_WORD.findall(text))


def norm(text: str) -> str:
    return " ".join(text.split())


# -- gold main content (generator-aware rules, only for scoring) -------------------------------


def gold(path: Path) -> tuple[str, list[str]] | None:
    """(main text, code blocks) cut by rules that know Sphinx and AsciiDoc; None if neither."""
    import lxml.html

    tree = lxml.html.fromstring(path.read_bytes())
    for junk in tree.xpath("//script|//style|//a[@class='headerlink']"):
        junk.drop_tree()
    main = tree.xpath("//div[@role='main']")
    if main:
        node = main[0]
        return node.text_content(), [norm(p.text_content()) for p in node.xpath(".//pre")]
    content = tree.xpath("//div[@id='content']")
    if not content:
        return None
    node = content[0]
    for sect in node.xpath("./div[@class='sect1'][h2[normalize-space()='GIT']]"):
        sect.drop_tree()
    name = " ".join(p.text_content() for p in tree.xpath("//div[@id='header']//div[@class='sectionbody']"))
    return name + "\n" + node.text_content(), [norm(p.text_content()) for p in node.xpath(".//pre")]


# -- boilerplate chunks: what the product indexes, before and after -------------------------

# A chunk is boilerplate when at least half of its lines are page chrome (these patterns, taken
# from the chrome of the two manuals and DocBook), or when it holds fewer than 4 words of 3+
# letters outside those lines (a heading path with nothing under it, a lone "Note").
CHROME_LINE = re.compile(
    r"Part of the \S+ suite|^Last updated|\b(?:Prev|Previous)\b.*\b(?:Next|Up|Home)\b"
    r"|^(?:index|modules|next|previous)\b.*\||Python\s+»|Quick search|Show Source|Report a Bug"
    r"|^This Page$|^Table of Contents$|^(?:Previous|Next) topic|©|Copyright|Navigation$|Manual Page$",
    re.IGNORECASE,
)
CONTENT_WORD = re.compile(r"[^\W\d_]{3,}")


def is_boilerplate(text: str) -> bool:
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("```")]
    chrome = [line for line in lines if CHROME_LINE.search(line)]
    rest = " ".join(line for line in lines if not CHROME_LINE.search(line))
    return not lines or len(chrome) * 2 >= len(lines) or len(CONTENT_WORD.findall(rest)) < 4


def chunk_share(loader_name: str, files: list[str]) -> tuple[int, int, int]:
    """(chunks, boilerplate chunks, heading paths repeating the title) for one loader."""
    from assistant.retrieval.chunking import chunk_document
    from assistant.retrieval.errors import IngestError
    from assistant.retrieval.types import section_path

    load = make_loader(loader_name)
    total = bad = repeated = 0
    for file in files:
        try:
            doc = load(Path(file).read_bytes(), Path(file))
        except IngestError:
            continue
        for chunk in chunk_document(doc):
            total += 1
            bad += is_boilerplate(chunk.text)
            path = section_path(doc.title, chunk.heading_path)
            first = path[0].rstrip("¶").strip().casefold() if path else ""
            repeated += bool(first) and (first in doc.title.casefold() or doc.title.casefold() in first)
    return total, bad, repeated


# -- the candidates (run in a child process) ---------------------------------------------------


def make_loader(name: str):
    if name == "product":
        from assistant.retrieval.loaders import load_html

        return load_html
    import types

    source = subprocess.run(["git", "show", f"{OLD_LOADER_COMMIT}:assistant/retrieval/loaders.py"],
                            capture_output=True, text=True, check=True, cwd=ROOT).stdout
    old = types.ModuleType("old_loaders")
    exec(compile(source, "old_loaders.py", "exec"), old.__dict__)
    return old.load_html


def make_extractor(name: str):
    if name in ("old-loader", "product"):
        load = make_loader("product" if name == "product" else "old")
        return lambda raw: "\n".join(b.text for b in load(raw, "x.html").blocks)
    if name == "trafilatura":
        import trafilatura

        return lambda raw: trafilatura.extract(
            raw.decode("utf-8", "replace"), output_format="markdown", include_tables=True,
            include_formatting=True, include_comments=False, favor_recall=True, deduplicate=False,
        ) or ""
    if name == "readability":
        import lxml.html
        from readability import Document

        return lambda raw: lxml.html.fromstring(Document(raw.decode("utf-8", "replace")).summary()).text_content()
    if name == "justext":
        import justext

        stop = justext.get_stoplist("English")
        return lambda raw: "\n".join(p.text for p in justext.justext(raw, stop) if not p.is_boilerplate)
    if name == "resiliparse":
        from resiliparse.extract.html2text import extract_plain_text

        return lambda raw: extract_plain_text(raw.decode("utf-8", "replace"), main_content=True,
                                              preserve_formatting=True)
    raise SystemExit(f"unknown extractor {name}")


def run_child(name: str, files: list[str]) -> dict:
    import resource

    import psutil

    proc = psutil.Process()
    base = proc.memory_info().rss
    try:
        extract = make_extractor(name)
    except ImportError as exc:  # the comparison candidates are not product dependencies
        return {"missing": f"{exc.name} not installed"}
    import_rss = proc.memory_info().rss
    results = []
    for file in files:
        raw = Path(file).read_bytes()
        start = time.perf_counter()
        try:
            text = extract(raw)
            error = None
        except Exception as exc:  # a candidate failing on a page is a result, not a crash
            text, error = "", f"{type(exc).__name__}: {exc}"[:120]
        results.append({"file": file, "ms": (time.perf_counter() - start) * 1000, "text": text, "error": error})
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"import_mb": (import_rss - base) / 2**20, "peak_mb": peak / 2**20, "pages": results}


def score(pages: list[dict]) -> dict:
    rec, prec, code_kept, code_total, ms, errors = [], [], 0, 0, [], 0
    for page in pages:
        ref = gold(Path(page["file"]))
        if ref is None:
            continue
        gold_text, codes = ref
        out = tokens(page["text"])
        want = tokens(gold_text)
        common = sum((out & want).values())
        rec.append(common / max(sum(want.values()), 1))
        prec.append(common / max(sum(out.values()), 1) if out else 0.0)
        flat = norm(page["text"])
        code_total += len([c for c in codes if c])
        code_kept += sum(1 for c in codes if c and c in flat)
        ms.append(page["ms"])
        errors += bool(page["error"])
    return {
        "pages": len(rec),
        "recall": statistics.mean(rec),
        "recall_p10": sorted(rec)[len(rec) // 10],
        "precision": statistics.mean(prec),
        "code": code_kept / max(code_total, 1),
        "ms": statistics.median(ms),
        "errors": errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--git-dir", type=Path, default=GIT_DOC)
    parser.add_argument("--only", nargs="*", default=list(EXTRACTORS))
    parser.add_argument("--append", type=Path, help="append a dated section to this Markdown file")
    args = parser.parse_args()
    if args.child:
        files = json.loads(sys.stdin.read())
        print(json.dumps(run_child(args.child, files)))
        return
    corpora = {
        "docs-python (Sphinx)": sorted(str(p) for p in DOCS_PYTHON.glob("*.html")),
        "git-doc (AsciiDoc)": sorted(str(p) for p in args.git_dir.glob("git*.html")),
    }
    lines = [
        "| corpus | extractor | pages | recall | recall p10 | precision | code kept | ms/page (median) "
        "| import RSS MB | peak RSS MB | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for corpus, files in corpora.items():
        for name in args.only:
            out = subprocess.run(
                [sys.executable, "-m", "bench.html_extract", "--child", name], input=json.dumps(files),
                capture_output=True, text=True, check=True, cwd=ROOT,
            )
            result = json.loads(out.stdout)
            if "missing" in result:
                print(f"| {corpus} | {name} | skipped: {result['missing']} (pip install {PIP[name]}) |")
                continue
            s = score(result["pages"])
            row = (f"| {corpus} | {name} | {s['pages']} | {s['recall']:.3f} | {s['recall_p10']:.3f} "
                   f"| {s['precision']:.3f} | {s['code']:.3f} | {s['ms']:.1f} | {result['import_mb']:.1f} "
                   f"| {result['peak_mb']:.1f} | {s['errors']} |")
            lines.append(row)
            print(row, flush=True)
    share = [
        "| corpus | loader | chunks | boilerplate chunks | share | heading paths repeating the title |",
        "|---|---|---|---|---|---|",
    ]
    for corpus, files in corpora.items():
        for name in ("old", "product"):
            total, bad, repeated = chunk_share(name, files)
            row = f"| {corpus} | {name} | {total} | {bad} | {bad / max(total, 1):.1%} | {repeated} |"
            share.append(row)
            print(row, flush=True)
    if args.append:
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        section = (
            f"\n## HTML main-content extraction: candidates on two real manuals, {stamp}\n\n"
            f"Command: `nice -n 10 python -m bench.html_extract --append docs/BENCHMARKS.md`. Gold = the "
            "generator's own main block (Sphinx `div[role=main]`; AsciiDoc NAME + `#content` without the "
            "'GIT / Part of the git(1) suite' section); recall/precision over word tokens; code kept = gold "
            "`<pre>` blocks found whole in the output. `old-loader` is the hand-written tag dropper this "
            "replaced; `product` is today's `load_html`.\n\n" + "\n".join(lines) + "\n\n"
            "Chunks the product indexes (`chunk_document`), boilerplate counted by `is_boilerplate` in the "
            "script: half or more of a chunk's lines match page-chrome patterns (man-page suite footer, "
            "Prev/Up/Home/Next, Sphinx related bar, copyright, ...), or fewer than 4 words of 3+ letters "
            "outside them.\n\n" + "\n".join(share) + "\n"
        )
        with args.append.open("a", encoding="utf-8") as fh:
            fh.write(section)


if __name__ == "__main__":
    main()
