"""The line under the chat box: Chainlit's "LLMs can make mistakes" only when an LLM answers.

Chainlit takes that line from its translation files (`chat.watermark`, one per language), served by
`GET /project/translations`. Without an LLM every answer is quoted from the documents, so the
warning is wrong there: this route serves the same translations with the line replaced by one
that fits retrieval-only answers (in English; other languages get an empty line rather than a
false one).
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import Query
from fastapi.responses import JSONResponse

from assistant.upstream_compat import add_route_first, translation

PATH = "/project/translations"
RETRIEVAL_ONLY_LINE = "Answers quote your documents: open the cited sources to check them."


def without_llm_warning(translation: dict[str, Any], language: str) -> dict[str, Any]:
    """`translation` with `chat.watermark` fit for retrieval-only answers."""
    out = copy.deepcopy(translation)
    chat = out.get("chat")
    if isinstance(chat, dict) and "watermark" in chat:
        chat["watermark"] = RETRIEVAL_ONLY_LINE if language.lower().startswith("en") else ""
    return out


def install_watermark(app: Any, llm_enabled: bool) -> None:
    """Serve translations without the LLM warning when no LLM is configured (ahead of Chainlit's route)."""
    if llm_enabled:
        return

    async def translations(language: str = Query(default="en-US", pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
                           ) -> JSONResponse:
        effective, loaded = translation(language)
        return JSONResponse({"translation": without_llm_warning(loaded, effective)})

    add_route_first(app, PATH, translations)
