"""The chat page's HTML without third-party requests, and link previews that name this product.

Chainlit 2.12.0 serves every page (the chat, /login, /thread/...) from its `GET /{full_path:path}`
catch-all, which returns `chainlit.server.get_html_template()`: the frontend's index.html with

- `<link rel="preconnect">` to fonts.googleapis.com and fonts.gstatic.com (hard-coded; the Google
  Fonts stylesheet itself is replaced by public/theme.json "custom_fonts", which points at the
  Inter files in public/fonts/),
- the KaTeX stylesheet from cdn.jsdelivr.net (hard-coded; no setting changes it),
- for the copilot widget, Inter from Google Fonts whenever public/theme.json lists no
  "custom_fonts", and the listed ones taken relative to the host page, not the assistant,
- og:image and og:url naming Chainlit (its banner and GitHub page) unless `[UI]
  custom_meta_image_url` / `custom_meta_url` are set, and these must be absolute URLs of the
  deployment, which a config file shipped with the code cannot know.

No setting removes the first two, so `install_offline_page()` adds a middleware that rewrites the
HTML Chainlit serves (the markup it expects is in `assistant.upstream_compat`): KaTeX from the copy
in public/katex/ (katex 0.16.22, woff2 fonts only), no preconnects, and og:url / og:image as
absolute URLs of this server (`CHAINLIT_URL` when set, Chainlit's own setting for the public
address behind a proxy; else Render's `RENDER_EXTERNAL_URL`; else the request's URL); it also
makes theme.json's font URLs absolute. If a Chainlit upgrade changes the markup, the patterns
stop matching and the browser test that blocks third-party requests (test_browser_offline) fails.
"""

from __future__ import annotations

import html
import json
import os
import re
from collections.abc import Callable
from typing import Any

from starlette.requests import Request

from assistant.upstream_compat import PAGE_KATEX_LINK, PAGE_OG_TAG, PAGE_PRECONNECT, add_middleware, ui_setting

KATEX_CSS = "/public/katex/katex.min.css"
OG_IMAGE = "/public/og-image.png"
THEME = "/public/theme.json"



def public_base(request: Request) -> str:
    """The deployment's public origin (and root path), without a trailing slash."""
    for name in ("CHAINLIT_URL", "RENDER_EXTERNAL_URL"):  # Chainlit's own setting; Render sets the other
        configured = os.environ.get(name, "").strip()
        if configured.startswith(("http://", "https://")):
            return configured.rstrip("/")
    return str(request.base_url).rstrip("/")


def offline_html(page: str, *, base: str, url: str, root_path: str = "") -> str:
    """Chainlit's page HTML with local KaTeX, no preconnects, and absolute og:url / og:image.

    `base` is the public origin, `url` the page's own address. An og:image already set to an
    absolute URL (`custom_meta_image_url`) is kept; a relative one is made absolute; Chainlit's
    default banner is replaced by this product's card.
    """
    page = PAGE_KATEX_LINK.sub(f'href="{root_path}{KATEX_CSS}"', page)
    page = PAGE_PRECONNECT.sub("", page)

    def og(match: re.Match[str]) -> str:
        kind, value = match.group(2), html.unescape(match.group(3))
        if kind == "url" and not _custom("custom_meta_url"):
            value = url
        elif kind == "image" and not _custom("custom_meta_image_url"):
            value = OG_IMAGE
        if value.startswith("/"):
            value = base + value
        return match.group(1) + html.escape(value, quote=True) + match.group(4)

    return PAGE_OG_TAG.sub(og, page)


def _custom(setting: str) -> bool:
    """Whether `[UI] <setting>` is set in .chainlit/config.toml."""
    return bool(ui_setting(setting))


class OfflinePage:
    """ASGI middleware: HTML answers to GET requests go through `offline_html()`; theme.json too.

    A middleware rather than a replaced route: FastAPI 0.165 keeps Chainlit's router behind an
    `_IncludedRouter`, so its catch-all cannot be swapped from outside without touching internals.
    Only `text/html` bodies are buffered (the page is a few kB); everything else streams through.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope.get("method") != "GET":
            await self.app(scope, receive, send)
            return
        start: dict | None = None
        chunks: list[bytes] = []
        is_theme = scope.get("path", "").removeprefix(scope.get("root_path", "")) == THEME

        async def rewrite(message: dict) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                headers = {k.lower(): v for k, v in message.get("headers", [])}
                kind = headers.get(b"content-type", b"")
                if b"content-encoding" not in headers and (kind.startswith(b"text/html") or is_theme):
                    start = message
                    return
            elif message["type"] == "http.response.body" and start is not None:
                chunks.append(message.get("body", b""))
                if message.get("more_body"):
                    return
                body = (self._theme if is_theme else self._page)(scope, b"".join(chunks))
                headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
                headers.append((b"content-length", str(len(body)).encode()))
                await send({**start, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
            await send(message)

        await self.app(scope, receive, rewrite)

    @staticmethod
    def _theme(scope: dict, body: bytes) -> bytes:
        """theme.json with absolute font URLs: the widget adds its `custom_fonts` to the host page,
        where "/public/..." would name the host's own files (and an empty list makes Chainlit's
        widget load Inter from Google Fonts)."""
        try:
            theme = json.loads(body)
        except ValueError:
            return body
        base = public_base(Request(scope))
        fonts = theme.get("custom_fonts") if isinstance(theme, dict) else None
        if isinstance(fonts, list):
            theme["custom_fonts"] = [base + f if isinstance(f, str) and f.startswith("/") else f for f in fonts]
        return json.dumps(theme).encode("utf-8")

    @staticmethod
    def _page(scope: dict, body: bytes) -> bytes:
        request = Request(scope)
        root_path = scope.get("root_path", "")
        base = public_base(request)
        url = base + request.url.path.removeprefix(root_path)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return body
        return offline_html(text, base=base, url=url, root_path=root_path).encode("utf-8")


def install_offline_page(app: Any) -> None:
    """Make every HTML page the app serves free of third-party requests (see `OfflinePage`).

    Innermost (appended, where `add_middleware` would put it outermost): it must see the page before
    Chainlit's GZip middleware compresses it.
    """
    add_middleware(app, OfflinePage, innermost=True)
