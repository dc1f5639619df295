"""Per-session search options: the chat settings panel and turning its values into search arguments.

Settings live in the Chainlit session (`session.chat_settings`), so each user's top-k, mode and
filter apply to their own chat only. The filter box takes a path or URL prefix, or `key=value`
filters (`tag=faq`, `type=pdf`, `meta.lang=en`, several separated by spaces); what it cannot
parse becomes a one-line `QueryError` for the chat.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from assistant.retrieval.errors import QueryError
from assistant.retrieval.filters import parse_filters
from assistant.retrieval.types import SEARCH_MODES

TOP_K_MIN, TOP_K_MAX = 1, 20
MODE_ITEMS = {
    "Hybrid: meaning + keywords": "hybrid",
    "Meaning only (vectors)": "vector",
    "Keywords only (full-text)": "text",
}
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class SearchOptions:
    """What one question is searched with."""

    k: int
    mode: str = "hybrid"
    filter_text: str = ""
    filters: tuple[str, ...] = ()  # "key=value" items for parse_filters

    @property
    def filter_dict(self) -> dict[str, str] | None:
        """The filters as the mapping `ChatPipeline.run(filters=...)` takes (None when unfiltered)."""
        if not self.filters:
            return None
        return dict(item.partition("=")[::2] for item in self.filters)


def settings_widgets(default_k: int) -> list[Any]:
    """The chat settings inputs (top-k slider, mode select, filter box)."""
    from chainlit.input_widget import Select, Slider, TextInput

    return [
        Slider(id="top_k", label="Passages to retrieve (top-k)", initial=min(max(default_k, TOP_K_MIN), TOP_K_MAX),
               min=TOP_K_MIN, max=TOP_K_MAX, step=1,
               description="More passages give the answer more to draw on; fewer keep it focused."),
        Select(id="mode", label="Search mode", items=MODE_ITEMS, initial_value="hybrid",
               description="Hybrid finds paraphrases and exact names; the others are for comparing."),
        TextInput(id="source_filter", label="Only search in", initial="",
                  placeholder="/srv/docs/handbook/  or  tag=faq  or  type=pdf",
                  description="A path or URL prefix, or key=value filters (tag, type, source, meta.KEY)."),
    ]


def parse_filter_text(text: str | None) -> tuple[str, ...]:
    """The filter box as `key=value` items: a bare prefix becomes `source=prefix`."""
    raw = " ".join(str(text or "").split())
    if not raw:
        return ()
    if "=" not in raw:
        return (f"source={raw}",)
    try:
        tokens = shlex.split(raw)
    except ValueError:
        raise QueryError(f"The filter {raw!r} has an unclosed quote; fix it in the chat settings") from None
    items: list[str] = []
    prefix: list[str] = []
    for token in tokens:
        key, sep, value = token.partition("=")
        if sep and _KEY.match(key):
            items.append(f"{key}={value}")
        else:
            prefix.append(token)
    if prefix:
        items.insert(0, "source=" + " ".join(prefix))
    keys = [item.partition("=")[0] for item in items]
    if len(set(keys)) != len(keys):
        raise QueryError(f"The filter {raw!r} names a key twice; use each key (and one prefix) once")
    parse_filters(items)  # raises QueryError naming an unknown key
    return tuple(items)


def search_options(values: Mapping[str, Any] | None, default_k: int) -> SearchOptions:
    """Validated options from the session's chat settings (missing or odd values fall back)."""
    values = values or {}
    try:
        k = round(float(values.get("top_k", default_k)))
    except (TypeError, ValueError):
        k = default_k
    k = min(max(k, TOP_K_MIN), TOP_K_MAX)
    mode = str(values.get("mode") or "hybrid")
    if mode not in SEARCH_MODES:
        mode = "hybrid"
    text = " ".join(str(values.get("source_filter") or "").split())
    try:
        filters = parse_filter_text(text)
    except QueryError as err:
        raise QueryError(f"Search filter: {err}") from None
    return SearchOptions(k=k, mode=mode, filter_text=text, filters=filters)
