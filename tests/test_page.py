"""The page Chainlit serves, rewritten by assistant/ui/page.py: local KaTeX, no preconnects, og tags
naming this product's server, absolute font URLs in theme.json (for the widget). Through Starlette's
TestClient on Chainlit's real app; the browser side is tests/test_browser_offline.py."""

from __future__ import annotations

import re
from typing import Any

import pytest
from chainlit.config import config as cl_config
from chainlit.server import app as server_app
from starlette.testclient import TestClient

from assistant.ui.page import offline_html
from tests.fakes.installed_app import install_for_tests

UPSTREAM_HEAD = """<title>Doc Assistant</title>
    <meta property="og:image" content="https://chainlit-cloud.s3.eu-west-3.amazonaws.com/logo/chainlit_banner.png">
    <meta property="og:url" content="https://github.com/Chainlit/chainlit">
    <link rel="preconnect" href="https://fonts.googleapis.com" />
    <link rel="preconnect" href="https://fonts.gstatic.com" crossorigin />
    <link
      rel="stylesheet"
      href="https://cdn.jsdelivr.net/npm/katex@0.16.22/dist/katex.min.css"
    />"""



@pytest.fixture(scope="module", autouse=True)
def installed() -> None:
    """The app's middleware on Chainlit's server, as `chainlit run assistant/app.py` installs it."""
    install_for_tests()


def og(page: str) -> dict[str, str]:
    return dict(re.findall(r'<meta property="og:(\w+)" content="([^"]*)">', page))


def test_offline_html_rewrites_what_chainlit_injects(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cl_config.ui, "custom_meta_url", None)
    monkeypatch.setattr(cl_config.ui, "custom_meta_image_url", None)
    page = offline_html(UPSTREAM_HEAD, base="https://docs.example.org", url="https://docs.example.org/thread/1",
                        root_path="/chat")
    assert "https://" not in page.replace("https://docs.example.org", "")
    assert 'href="/chat/public/katex/katex.min.css"' in page and "preconnect" not in page
    assert og(page) == {"image": "https://docs.example.org/public/og-image.png",
                        "url": "https://docs.example.org/thread/1"}


def test_configured_meta_urls_are_kept_and_a_relative_image_made_absolute(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cl_config.ui, "custom_meta_url", "https://docs.example.org/")
    monkeypatch.setattr(cl_config.ui, "custom_meta_image_url", "/public/card.png")
    head = UPSTREAM_HEAD.replace("https://github.com/Chainlit/chainlit", "https://docs.example.org/").replace(
        "https://chainlit-cloud.s3.eu-west-3.amazonaws.com/logo/chainlit_banner.png", "/public/card.png")
    page = offline_html(head, base="http://10.0.0.5:8000", url="http://10.0.0.5:8000/")
    assert og(page) == {"image": "http://10.0.0.5:8000/public/card.png", "url": "https://docs.example.org/"}


@pytest.fixture
def client() -> Any:
    return TestClient(server_app)


def test_the_served_page_uses_chainlit_url_for_link_previews(client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHAINLIT_URL", "https://assistant.example.org/")
    response = client.get("/thread/abc?x=1", headers={"accept-encoding": "gzip"})  # rewritten before GZip
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    tags = og(response.text)
    assert tags["url"] == "https://assistant.example.org/thread/abc"
    assert tags["image"] == "https://assistant.example.org/public/og-image.png"
    assert "jsdelivr" not in response.text and "googleapis" not in response.text


def test_theme_json_names_fonts_on_this_server_for_the_widget(client: Any) -> None:
    theme = client.get("/public/theme.json").json()
    assert theme["custom_fonts"] == ["http://testserver/public/fonts/inter.css"]
    assert "light" in theme["variables"]
    css = client.get("/public/fonts/inter.css").text
    for font in re.findall(r"url\(([^)]+)\)", css):
        assert client.get(f"/public/fonts/{font}").status_code == 200


def test_other_responses_pass_through_untouched(client: Any) -> None:
    widget = client.get("/public/widget-demo.html")
    assert widget.status_code == 200 and "mountChainlitWidget" in widget.text
    assert client.get("/public/og-image.png").content[:8] == b"\x89PNG\r\n\x1a\n"
