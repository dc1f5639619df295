"""The command line's error output: one line per problem, JSON errors for --json, limits in --help.

In process (`assistant.__main__.main`), against the session PostgreSQL or an address where nothing
listens, so each case takes milliseconds.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from assistant.__main__ import MAX_HITS, error_kind, main
from assistant.retrieval.errors import CircuitOpenError, DatabaseError, ModelMismatchError, QueryError
from assistant.retrieval.filters import DOCUMENT_TYPES, parse_filters
from assistant.retrieval.loaders import load_file
from tests.conftest import ROOT
from tests.fakes.documents import make_pdf

NOWHERE = "postgresql://assistant:p@127.0.0.1:9/docs"  # nothing listens on port 9; a one-letter password


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def json_error(out: str) -> dict[str, str]:
    lines = out.splitlines()
    assert len(lines) == 1, out  # one JSON object, nothing else on stdout
    return json.loads(lines[0])


def test_search_json_errors_are_one_json_object_on_stdout(clean_env: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    clean_env.setenv("DATABASE_URL", NOWHERE)
    code, out, err = run(capsys, "search", "how do I deploy?", "--json")
    assert code == 1 and err == ""
    error = json_error(out)
    assert error["kind"] == "database" and error["error"].startswith("Cannot reach PostgreSQL at 127.0.0.1:9/docs")
    assert "port 9 failed" in error["error"] and "***" not in error["error"]  # the password "p" redacted no word

    code, out, err = run(capsys, "search", "how do I deploy?")  # without --json: one line on stderr
    assert code == 1 and out == "" and err.startswith("error: Cannot reach PostgreSQL") and err.count("\n") == 1

    for args, kind in ((["-k", "500"], "usage"), (["-k", "ten"], "usage"), (["--mode", "fuzzy"], "usage"),
                       (["--filter", "type=docx"], "query"), (["--filter", "colour=red"], "query")):
        code, out, err = run(capsys, "search", "deploy", "--json", *args)
        assert code == 2 and err == "", (args, err)
        assert json_error(out)["kind"] == kind, (args, out)
    clean_env.setenv("EMBEDDING_PROVIDER", "nonsense")
    code, out, _ = run(capsys, "search", "deploy", "--json")
    assert code == 1 and json_error(out) == {
        "error": "EMBEDDING_PROVIDER='nonsense' is not known; use one of local, hf, openai", "kind": "config"}


def test_k_above_the_limit_is_refused_before_anything_runs_and_the_limit_is_documented(
        clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    clean_env.setenv("DATABASE_URL", NOWHERE)
    for k in ("0", "101", "500"):
        code, out, err = run(capsys, "search", "deploy", "-k", k)
        assert code == 2 and out == "" and f"must be between 1 and {MAX_HITS}, not {int(k)}" in err
        assert "Cannot reach" not in err  # refused before the database was asked
    with pytest.raises(SystemExit):
        main(["search", "--help"])
    assert "number of hits, 1-100" in " ".join(capsys.readouterr().out.split())
    assert "`-k` takes 1 to\n100 hits" in (ROOT / "README.md").read_text()


def test_unknown_filter_values_are_refused_with_the_allowed_ones(clean_env: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    clean_env.setenv("DATABASE_URL", NOWHERE)
    code, out, err = run(capsys, "search", "deploy", "--filter", "type=docx")
    assert code == 2 and out == ""
    assert err == "error: Unknown document type 'docx'; type= takes one of: md, txt, html, pdf\n"
    for spelled, kind in (("PDF", "pdf"), (".md", "md"), ("markdown", "md"), ("htm", "html"), ("text", "txt")):
        assert parse_filters([f"type={spelled}"]).metadata == (("type", kind),)
    with pytest.raises(QueryError, match="type= takes one of: md, txt, html, pdf"):
        parse_filters({"type": "docx"})  # the chat's filter box too


def test_document_types_are_the_ones_the_loaders_give(tmp_path: Path) -> None:
    files = {"a.md": b"# A\n\nSome text.", "b.txt": b"Some text.", "c.html": b"<h1>C</h1><p>Some text.</p>",
             "d.pdf": make_pdf([["Some text."]]), "e.markdown": b"# E\n\ntext", "f.htm": b"<p>Some text.</p>"}
    for name, raw in files.items():
        (tmp_path / name).write_bytes(raw)
        assert load_file(tmp_path / name).metadata["type"] in DOCUMENT_TYPES


def test_error_kinds_are_snake_case_names() -> None:
    assert error_kind(DatabaseError("x")) == "database" and error_kind(QueryError("x")) == "query"
    assert error_kind(ModelMismatchError("x")) == "model_mismatch"
    assert error_kind(CircuitOpenError("x")) == "circuit_open"


def _warning_pdf() -> bytes:
    """A readable PDF whose startxref points a few bytes off: pypdf recovers, and logs warnings."""
    raw = make_pdf([["The red lever resets the pump."]])
    return re.sub(rb"startxref\n(\d+)", lambda m: b"startxref\n%d" % (int(m.group(1)) + 7), raw)


@pytest.mark.slow
def test_ingest_prints_one_clean_line_per_bad_file_and_library_noise_goes_to_the_log(
        database_url: str, tmp_path: Path, clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "good.md").write_text("# Pumps\n\nThe red lever resets the pump.\n")
    (docs / "damaged.pdf").write_bytes(_warning_pdf())
    (docs / "broken.pdf").write_bytes(b"%PDF-1.7 garbage that is not a pdf")
    (docs / "binary.txt").write_bytes(b"\x00\x01 not text \x00" * 50)
    (docs / "empty.md").write_text("")
    data = tmp_path / "data"
    for name, value in {"DATABASE_URL": database_url, "ASSISTANT_DATA_DIR": str(data),
                        "ASSISTANT_SAMPLE_DOCS": "0"}.items():
        clean_env.setenv(name, value)
    code, out, err = run(capsys, "ingest", str(docs), "--quiet")
    assert code == 1 and out.startswith("Ingest: 2 added, 0 updated, 0 unchanged, 3 failed")
    lines = err.splitlines()
    for bad in ("broken.pdf", "binary.txt", "empty.md"):
        [line] = [ln for ln in lines if bad in ln]  # one line per bad file, in all the output ...
        assert line.startswith(f"skipped {docs.resolve() / bad}: ") or line.startswith(f"skipped {docs / bad}: ")
        assert line.count(bad) == 1 and bad not in out  # ... naming the file once
    assert "startxref" not in err and "pypdf" not in err  # the damaged PDF was read; pypdf's complaints ...
    assert "incorrect startxref pointer" in (data / "assistant.log").read_text()  # ... are in the log
