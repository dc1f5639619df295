"""`assistant.upstream_compat`: the pins fail loudly, and each reach into upstream still fits it.

The first test is the tripwire: when Chainlit or tiktoken is upgraded (or a deployment installs
another version), it fails with the checklist to follow. The others check the entries against the
installed packages themselves, so a re-pin is only green once every entry still holds.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse
from starlette.testclient import TestClient

from assistant import upstream_compat as compat
from tests.conftest import ROOT


def test_installed_chainlit_and_tiktoken_are_the_versions_the_patches_were_written_for() -> None:
    mismatches = compat.version_mismatches()
    assert not mismatches, "\n".join(mismatches)


def test_a_different_version_names_the_pin_and_the_checklist() -> None:
    found = compat.version_mismatches(lambda package: "9.9.9")
    assert found[0] == ("patches were written for chainlit 2.12.0, installed 9.9.9: read docs/UPGRADING-CHAINLIT.md")
    assert len(found) == len(compat.PINNED)
    assert (ROOT / compat.UPGRADE_GUIDE).is_file()


def test_requirements_pin_the_same_versions() -> None:
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==([^\s#]+)", (ROOT / "requirements.txt").read_text(), re.M))
    for package, version in compat.PINNED.items():
        assert pins.get(package) == version, f"requirements.txt pins {package}=={pins.get(package)}"


def test_a_route_added_first_wins_over_a_catch_all_and_is_replaced_not_stacked() -> None:
    app = FastAPI()

    @app.get("/{full_path:path}")
    async def page(full_path: str) -> PlainTextResponse:
        return PlainTextResponse("the chat page")

    async def first() -> PlainTextResponse:
        return PlainTextResponse("ours")

    async def second() -> PlainTextResponse:
        return PlainTextResponse("ours, again")

    first.__module__ = second.__module__ = "assistant.health"  # as if ours
    compat.add_route_first(app, "/healthz", first)
    compat.add_route_first(app, "/healthz", second)
    assert TestClient(app).get("/healthz").text == "ours, again"
    assert [getattr(r, "path", None) for r in app.router.routes].count("/healthz") == 1
    assert TestClient(app).get("/anything").text == "the chat page"


def test_middleware_is_added_once_and_the_built_stack_is_rebuilt() -> None:
    seen: list[str] = []

    class Tag:
        def __init__(self, app: object, label: str) -> None:
            self.app, self.label = app, label

        async def __call__(self, scope: dict, receive: object, send: object) -> None:
            seen.append(self.label)
            await self.app(scope, receive, send)  # type: ignore[operator]

    app = FastAPI()
    app.add_api_route("/x", lambda: "x")
    client = TestClient(app)
    client.get("/x")  # the stack is built now: Starlette would refuse add_middleware
    compat.add_middleware(app, Tag, label="one")
    compat.add_middleware(app, Tag, label="two")  # updates the installed one
    client.get("/x")
    assert seen == ["two"] and sum(m.cls is Tag for m in app.user_middleware) == 1


def test_forget_chat_context_drops_the_sessions_message_list() -> None:
    from chainlit.chat_context import chat_contexts

    chat_contexts["session-x"] = []
    compat.forget_chat_context("session-x")
    compat.forget_chat_context("session-x")  # already gone: no error
    assert "session-x" not in chat_contexts


def test_tiktoken_refuses_downloads_inside_and_is_restored_after() -> None:
    import tiktoken.load as tl

    original = tl.read_file
    with compat.tiktoken_local_files_only(), pytest.raises(compat.DownloadRefused):
        tl.read_file("https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken")
    assert tl.read_file is original


@pytest.mark.slow
def test_the_page_patterns_match_chainlits_real_page() -> None:
    """ui/page.py rewrites these in Chainlit's index.html; a Chainlit that changed its markup fails here."""
    from chainlit.server import get_html_template

    page = get_html_template("")
    assert compat.PAGE_KATEX_LINK.search(page), "KaTeX stylesheet link not found"
    assert compat.PAGE_PRECONNECT.search(page), "Google Fonts preconnect not found"
    assert {m.group(2) for m in compat.PAGE_OG_TAG.finditer(page)} == {"url", "image"}


def test_the_dom_hooks_are_the_ones_doc_assistant_js_uses() -> None:
    script = (ROOT / "public" / "doc-assistant.js").read_text()
    for selector in compat.DOM_HOOKS.values():
        name = selector.lstrip("#")
        assert name in script, f"{selector} is listed in upstream_compat.DOM_HOOKS but not used by doc-assistant.js"
    used = set(re.findall(r'getElementById\("([^"]+)"\)', script)) | set(re.findall(r'closest\("([^"]+)"\)', script))
    listed = {s.lstrip("#") for s in compat.DOM_HOOKS.values()}
    assert used <= listed, f"doc-assistant.js uses {sorted(used - listed)}: list them in upstream_compat.DOM_HOOKS"


def test_every_reach_into_chainlit_internals_goes_through_the_compat_module() -> None:
    """Private Chainlit/tiktoken names (route lists, middleware stacks, chat_contexts, tiktoken.load)
    appear in assistant/ only inside upstream_compat.py."""
    internal = re.compile(r"router\.routes|middleware_stack|user_middleware|chat_contexts|tiktoken\.load"
                          r"|dependency_overrides|cors_allowed_origins *=|from chainlit\.server import|chainlit\.auth")
    offenders = []
    for path in sorted((ROOT / "assistant").rglob("*.py")):
        if path.name == "upstream_compat.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if internal.search(line) and not line.lstrip().startswith("#"):
                offenders.append(f"{Path(path).relative_to(ROOT)}:{number}: {line.strip()}")
    allowed = {"from chainlit.server import app"}  # the app object itself (install(), cors, login defaults)
    offenders = [o for o in offenders if not any(a in o.split(": ", 1)[1] for a in allowed)]
    assert not offenders, "\n".join(offenders)
