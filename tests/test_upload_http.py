"""HTTP side of documents: `GET /documents/{id}` (originals) and the guarded upload routes.

Starlette's TestClient against small FastAPI apps with our routes installed the way app.py
installs them on Chainlit's app; the upload route hands accepted files to Chainlit's own handler,
with a real `WebsocketSession` to receive them. The database and embedder are real.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from pathlib import Path
from unittest.mock import AsyncMock

import chainlit as cl
import pytest
from chainlit.auth import get_current_user
from chainlit.config import config as cl_config
from chainlit.session import WebsocketSession
from fastapi import FastAPI
from starlette.requests import Request
from starlette.testclient import TestClient

from assistant.config import Settings
from assistant.originals import (
    Originals,
    _strip_overlap,
    base_url_from_environ,
    install_originals,
    link_local_sources,
    original_link,
    original_path,
)
from assistant.retrieval import open_retriever
from assistant.retrieval.ingest import ingest_paths
from assistant.retrieval.search import Retriever
from assistant.retrieval.types import Hit
from assistant.ui import uploads
from assistant.ui.runtime import Runtime
from assistant.ui.upload_routes import install_upload_routes
from tests.fakes.documents import make_pdf
from tests.test_access import login_on, login_server, store  # noqa: F401  (fixtures)
from tests.test_app_handlers import no_chainlit_data_layer  # noqa: F401  (an autouse fixture)
from tests.test_uploads import GUIDE

HOSTILE_HTML = """<!doctype html><html><head><title>Hostile page</title>
<script>document.title = 'pwned'; fetch('/project/threads')</script></head>
<body><h1>Hostile page</h1><p onclick="alert(1)">Click me for the Zorblax secret.</p>
<img src="https://tracker.example/pixel.gif"></body></html>"""


@pytest.fixture
def retriever(settings: Settings) -> Iterator[Retriever]:
    r = open_retriever(settings, announce=False, sample_docs=False)
    yield r
    r.store.close()


def ingest(retriever: Retriever, folder: Path, name: str, data: bytes | str) -> int:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    report = ingest_paths([path], retriever.store, retriever.embedder, retriever.store.settings, progress=False)
    assert report.ok, report.failed
    [row] = retriever.store.documents(sources=[path.resolve().as_posix()])
    return int(row["id"])


def originals_client(retriever: Retriever, allowed: bool = True) -> TestClient:
    async def authorize(request: Request) -> bool:
        return allowed

    test_app = FastAPI()
    runtime = Runtime(retriever.store.settings, opener=lambda s: retriever)
    install_originals(test_app, Originals(runtime, authorize=authorize))
    return TestClient(test_app)


# -- originals -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_markdown_and_text_are_served_as_plain_text(retriever: Retriever, tmp_path: Path) -> None:
    md = ingest(retriever, tmp_path / "docs", "guide.md", GUIDE + "\n<script>alert(1)</script>\n")
    latin = ingest(retriever, tmp_path / "docs", "latin.txt", "Café au lait, crème brûlée.\n".encode("cp1252"))
    client = originals_client(retriever)
    response = client.get(f"/documents/{md}")
    assert response.status_code == 200 and response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.text.startswith("# Zorblax field guide") and "<script>alert(1)</script>" in response.text
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-security-policy"].startswith("sandbox;")
    assert "Café au lait, crème brûlée." in client.get(f"/documents/{latin}").text


def test_html_is_served_sandboxed_so_its_scripts_never_run(retriever: Retriever, tmp_path: Path) -> None:
    doc = ingest(retriever, tmp_path / "docs", "hostile.html", HOSTILE_HTML)
    response = originals_client(retriever).get(f"/documents/{doc}")
    assert response.status_code == 200 and response.headers["content-type"] == "text/html; charset=utf-8"
    csp = response.headers["content-security-policy"]
    assert "sandbox" in csp and "default-src 'none'" in csp and "script-src" not in csp
    assert "Click me for the Zorblax secret." in response.text


@pytest.mark.slow
def test_a_pdf_is_rendered_page_by_page_with_the_cited_page_marked(retriever: Retriever, tmp_path: Path) -> None:
    pdf = make_pdf([["Zorblax manual, first page."], ["The boiler room key hangs on hook <7> & stays there."]],
                   title="Zorblax <b>manual</b>")
    doc = ingest(retriever, tmp_path / "docs", "manual.pdf", pdf)
    client = originals_client(retriever)
    response = client.get(f"/documents/{doc}?page=2")
    body = response.text
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert '<section id="page-1" class="part">' in body and '<section id="page-2" class="part cited">' in body
    assert "hook &lt;7&gt; &amp; stays" in body and "Zorblax &lt;b&gt;manual&lt;/b&gt;" in body
    assert "The answer cited <a href='#page-2'>page 2</a>" in body
    download = client.get(f"/documents/{doc}?download=1")
    assert download.content == pdf and download.headers["content-type"] == "application/pdf"
    assert download.headers["content-disposition"] == "attachment; filename*=UTF-8''manual.pdf"
    assert "No indexed text on page 9" in client.get(f"/documents/{doc}?page=9").text


@pytest.mark.slow
def test_a_gone_or_changed_file_shows_the_indexed_text(retriever: Retriever, tmp_path: Path) -> None:
    gone = ingest(retriever, tmp_path / "docs", "gone.md", GUIDE)
    changed = ingest(retriever, tmp_path / "docs", "changed.md", GUIDE.replace("Zorblax", "Quux"))
    (tmp_path / "docs" / "gone.md").unlink()
    (tmp_path / "docs" / "changed.md").write_text("Someone rewrote this file after it was indexed.")
    client = originals_client(retriever)
    body = client.get(f"/documents/{gone}").text
    assert "no longer on the server" in body and "42 gigawatts" in body
    body = client.get(f"/documents/{changed}").text
    assert "has changed since it was indexed" in body and "Someone rewrote" not in body and "Quux" in body
    assert "?download=1" not in body


@pytest.mark.parametrize("path", [
    "/documents/999999", "/documents/abc", "/documents/..%2F..%2Fetc%2Fpasswd", "/documents/1.0",
    "/documents/" + "9" * 30,
])
@pytest.mark.slow
def test_only_ids_of_indexed_documents_are_served(path: str, retriever: Retriever, tmp_path: Path) -> None:
    ingest(retriever, tmp_path / "docs", "guide.md", GUIDE)
    response = originals_client(retriever).get(path)
    assert response.status_code == 404 and "root:" not in response.text


@pytest.mark.slow
def test_a_login_is_needed_when_the_chat_needs_one(retriever: Retriever, tmp_path: Path) -> None:
    doc = ingest(retriever, tmp_path / "docs", "guide.md", GUIDE)
    response = originals_client(retriever, allowed=False).get(f"/documents/{doc}")
    assert response.status_code == 401 and "sign in" in response.text and "Zorblax" not in response.text


def test_the_database_down_is_a_503_page(settings: Settings) -> None:
    def refuse(s: Settings) -> Retriever:
        from assistant.retrieval.errors import DatabaseError

        raise DatabaseError("Cannot reach PostgreSQL at db:5432 (connection refused)")

    async def allow(request: Request) -> bool:
        return True

    test_app = FastAPI()
    install_originals(test_app, Originals(Runtime(settings, opener=refuse, retry_after=0), authorize=allow))
    response = TestClient(test_app).get("/documents/1")
    assert response.status_code == 503 and "not reachable" in response.text and "db:5432" not in response.text


def test_the_routes_are_installed_ahead_of_chainlits_own() -> None:
    from chainlit.server import app as server_app

    from tests.fakes.installed_app import install_for_tests

    install_for_tests()
    paths = [getattr(r, "path", None) for r in server_app.router.routes]
    assert paths[0] == "/healthz"
    for path in ("/documents/{doc_id}", "/project/file", "/project/settings"):
        assert paths.index(path) < 5, paths  # ours, ahead of Chainlit's router and catch-all
    response = TestClient(server_app).get("/documents/abc")  # not the chat page from the catch-all
    assert response.status_code == 404 and "Document links look like /documents/12" in response.text


def test_links_point_at_the_assistant_as_the_browser_reached_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHAINLIT_URL", raising=False)
    assert base_url_from_environ({"HTTP_HOST": "localhost:8000", "wsgi.url_scheme": "ws"}) == "http://localhost:8000"
    behind_proxy = {"HTTP_HOST": "10.0.0.5:10000", "HTTP_X_FORWARDED_HOST": "docs-bot.onrender.com",
                    "HTTP_X_FORWARDED_PROTO": "https"}
    assert base_url_from_environ(behind_proxy) == "https://docs-bot.onrender.com"
    assert base_url_from_environ({"HTTP_HOST": "evil.com/<script>"}) is None
    assert base_url_from_environ({}) is None
    monkeypatch.setenv("CHAINLIT_URL", "https://chat.example.org/")
    assert base_url_from_environ({"HTTP_HOST": "x"}) == "https://chat.example.org"
    local = Hit(chunk_id=1, document_id=7, rank=1, score=1.0, title="T", source="/srv/docs/a.pdf", text="", page=3)
    web = Hit(chunk_id=2, document_id=8, rank=2, score=1.0, title="W", source="https://x.org/p", text="",
              url="https://x.org/p")
    link_local_sources([local, web], "https://chat.example.org")
    assert original_link(local) == "https://chat.example.org/documents/7?page=3#page-3" and local.url is None
    assert original_link(web) is None and web.url == "https://x.org/p"
    assert original_path(7) == "/documents/7"


def test_overlapping_chunks_are_shown_once() -> None:
    first = "Alpha beta gamma delta. The quick brown fox jumps over the lazy dog and runs away."
    second = "The quick brown fox jumps over the lazy dog and runs away. Then it sleeps."
    assert _strip_overlap(first, second) == "Then it sleeps."
    assert _strip_overlap(first, "Completely different text that shares nothing at all.") .startswith("Completely")


# -- the guarded upload routes -----------------------------------------------------------------


@pytest.fixture
def restore_upload_config() -> Iterator[None]:
    from assistant.ui import upload_routes

    feature = cl_config.features.spontaneous_file_upload
    saved = feature.model_dump() if feature is not None else None
    current = dict(upload_routes._settings)
    yield
    upload_routes._settings.clear()
    upload_routes._settings.update(current)  # the app's own settings again, for later tests
    if feature is not None and saved is not None:
        for key, value in saved.items():
            setattr(feature, key, value)


def upload_client(settings: Settings, user: str | None) -> TestClient:
    test_app = FastAPI()
    install_upload_routes(test_app, settings)
    test_app.dependency_overrides[get_current_user] = lambda: cl.User(identifier=user) if user else None
    return TestClient(test_app)


def live_session(made: list, user: str | None = None) -> WebsocketSession:
    session = WebsocketSession(id=str(uuid.uuid4()), socket_id=str(uuid.uuid4()), emit=AsyncMock(),
                               emit_call=AsyncMock(), user_env={}, client_type="webapp",
                               user=cl.User(identifier=user) if user else None)
    made.append(session)
    return session


def test_upload_settings_go_into_chainlits_config(restore_upload_config: None, tmp_path: Path) -> None:
    settings = Settings(sample_docs=False, data_dir=tmp_path, upload_max_mb=3, upload_max_files=2)
    install_upload_routes(FastAPI(), settings)
    feature = cl_config.features.spontaneous_file_upload
    assert feature.enabled and feature.max_size_mb == 3 and feature.max_files == 2
    install_upload_routes(FastAPI(), dataclasses.replace(settings, allow_uploads=False))
    assert not feature.enabled


def test_the_upload_route_refuses_before_keeping_anything(restore_upload_config: None, tmp_path: Path,
                                                          sessions: list) -> None:
    settings = Settings(sample_docs=False, data_dir=tmp_path, upload_max_mb=1, users=(("alice", "h"), ("bob", "h")),
                        admins=("alice",))
    session = live_session(sessions, user="alice")  # Chainlit's own check: the session's owner uploads
    admin, other = upload_client(settings, "alice"), upload_client(settings, "bob")
    url = f"/project/file?session_id={session.id}"

    refused = other.post(url, files={"file": ("a.md", GUIDE.encode(), "text/markdown")})
    assert refused.status_code == 403 and refused.json()["detail"] == uploads.NOT_ALLOWED
    empty = admin.post(url, files={"file": ("empty.md", b"", "text/markdown")})
    assert empty.status_code == 400 and empty.json()["detail"] == "empty.md is empty: there is nothing to index"
    docx = admin.post(url, files={"file": ("r.docx", b"PK", "application/octet-stream")})
    assert docx.status_code == 400 and ".docx files can't be indexed" in docx.json()["detail"]
    big = admin.post(url, files={"file": ("big.txt", b"x" * (1024 * 1024 + 70_000), "text/plain")})
    assert big.status_code == 413 and big.json()["detail"] == "The file is 1.1 MB; the limit is 1 MB per file"
    assert session.files == {}

    ok = admin.post(url, files={"file": ("../../x.md", GUIDE.encode(), "text/markdown")})
    assert ok.status_code == 200, ok.text
    [kept] = session.files.values()
    assert Path(kept["path"]).parent == session.files_dir  # Chainlit keeps it under a uuid, in the session


@pytest.mark.slow
def test_project_settings_hide_the_upload_button_from_non_admins(restore_upload_config: None, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.fakes.installed_app import install_for_tests

    install_for_tests()
    settings = Settings(sample_docs=False, data_dir=tmp_path, users=(("alice", "h"), ("bob", "h")), admins=("alice",))
    seen = {}
    for user in ("alice", "bob"):
        body = upload_client(settings, user).get("/project/settings").json()
        seen[user] = body["features"]["spontaneous_file_upload"]
    assert seen["alice"]["enabled"] is True and seen["alice"]["max_size_mb"] == 10
    assert seen["bob"]["enabled"] is False
    assert seen["alice"]["accept"]["application/pdf"] == [".pdf"]


# -- with Chainlit's real password login -----------------------------------------------------------


@pytest.mark.usefixtures("login_server")
@pytest.mark.slow
def test_with_a_login_originals_need_it_and_only_admins_upload(
        retriever: Retriever, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        restore_upload_config: None, sessions: list) -> None:
    from chainlit.server import app as server_app

    from assistant.auth import parse_users
    from assistant.ui.upload_routes import apply_upload_settings
    from tests.fakes.installed_app import install_for_tests
    from tests.test_access import ALICE_PASSWORD, BOB_PASSWORD, USERS, logged_in

    settings = retriever.store.settings
    install_for_tests(settings, Runtime(settings, opener=lambda s: retriever))
    apply_upload_settings(dataclasses.replace(settings, users=parse_users(USERS), admins=("alice",)))
    try:
        doc = ingest(retriever, tmp_path / "docs", "guide.md", GUIDE)
        anonymous = TestClient(server_app)
        refused = anonymous.get(f"/documents/{doc}")
        assert refused.status_code == 401 and "Zorblax" not in refused.text
        alice, bob = logged_in("alice", ALICE_PASSWORD), logged_in("bob", BOB_PASSWORD)
        assert "42 gigawatts" in bob.get(f"/documents/{doc}").text  # reading is for everyone signed in

        features = {name: client.get("/project/settings").json()["features"]["spontaneous_file_upload"]
                    for name, client in (("alice", alice), ("bob", bob))}
        assert features["alice"]["enabled"] is True and features["bob"]["enabled"] is False

        session = live_session(sessions, user="bob")
        response = bob.post(f"/project/file?session_id={session.id}",
                            files={"file": ("a.md", GUIDE.encode(), "text/markdown")})
        assert response.status_code == 403 and response.json()["detail"] == uploads.NOT_ALLOWED
        assert session.files == {}
    finally:
        apply_upload_settings(settings)
