"""What the configured LLM endpoint is, checked once at start: its models and its own tokenizer.

Servers that ignore the request's `model` field (llama.cpp's) never answer 404 to a typo in
LLM_MODEL, so the name is checked against `GET /models` when the server has that route, and the
result is one clear line in the server log (never a chat message: readers can't fix it).

Prompt budgets are counted with tiktoken, which undercounts small open models' tokens by 9-15%
(SmolLM2 against cl100k). Servers that expose their tokenizer (llama-cpp-python's
`/extras/tokenize/count`, llama.cpp's and vLLM's `/tokenize`) let the pipeline count exactly: the
check finds the route and measures how far the local count is off, so budgets start calibrated.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import httpx

from assistant.config import Settings
from assistant.retrieval.errors import public_url

log = logging.getLogger(__name__)

CHECK_TIMEOUT = 5.0  # seconds per request of the start-up check
CALIBRATION_TEXT = (
    "Doc Assistant answers questions about your documents with citations. Set OPENAI_BASE_URL to any "
    "OpenAI-compatible server, for example http://localhost:8080/v1, and LLM_MODEL to its model name. "
    "The chunker splits Markdown at headings; code blocks such as `python -m assistant ingest docs/` and "
    "tables stay whole. If the server runs out of memory (512 MB on Render's free tier), lower TOP_K or "
    "LLM_CONTEXT_TOKENS and restart. Sources are cited as [1], [2]; 3.5 GB, 2,048 tokens, 15-minute sleeps."
)  # prose, code, numbers and settings: what prompts are made of


@dataclass(frozen=True)
class Tokenizer:
    """A tokenizer route of the LLM server: `style` says how to call it."""

    url: str
    style: str  # "count" (llama-cpp-python: {"input"} -> {"count"}) | "tokenize" ({"content"} -> {"tokens"|"count"})


@dataclass
class ServerInfo:
    """What the start-up check found (None: could not tell)."""

    reachable: bool | None = None
    models: list[str] | None = None  # ids from GET /models
    model_listed: bool | None = None  # LLM_MODEL among them
    tokenizer: Tokenizer | None = None
    token_scale: float | None = None  # server tokens per local token, measured on CALIBRATION_TEXT
    notes: list[str] = field(default_factory=list)  # what was logged


def server_root(base_url: str) -> str:
    """`http://host:8080/v1` -> `http://host:8080`: the extra routes live beside /v1, not under it."""
    root = base_url.rstrip("/")
    return root[: -len("/v1")] if root.endswith("/v1") else root


def _headers(settings: Settings) -> dict[str, str]:
    return {"Authorization": f"Bearer {settings.openai_api_key}"} if settings.openai_api_key else {}


def _body(tokenizer: Tokenizer, text: str, model: str) -> dict[str, Any]:
    if tokenizer.style == "count":
        return {"input": text, "model": model}
    return {"content": text, "prompt": text, "model": model, "add_special": False}


def _parse_count(data: Any) -> int | None:
    if isinstance(data, dict):
        if isinstance(data.get("count"), int):
            return int(data["count"])
        if isinstance(data.get("tokens"), list):
            return len(data["tokens"])
    return None


async def count_with(client: httpx.AsyncClient, tokenizer: Tokenizer, text: str, settings: Settings) -> int | None:
    """Tokens of `text` by the server's tokenizer (None when the answer is not a count)."""
    response = await client.post(tokenizer.url, json=_body(tokenizer, text, settings.llm_model),
                                 headers=_headers(settings))
    response.raise_for_status()
    return _parse_count(response.json())


def _log(info: ServerInfo, level: int, message: str, *args: Any) -> None:
    info.notes.append(message % args)
    log.log(level, message, *args)


def _check_models(client: httpx.Client, settings: Settings, info: ServerInfo, where: str) -> None:
    base = (settings.openai_base_url or "https://api.openai.com/v1").rstrip("/")
    try:
        response = client.get(base + "/models", headers=_headers(settings))
    except httpx.HTTPError as exc:
        info.reachable = False
        _log(info, logging.WARNING, "LLM check: could not reach %s (%s); check OPENAI_BASE_URL and that the "
             "server is running. Answers fall back to retrieval-only until it is reachable.", where,
             type(exc).__name__)
        return
    info.reachable = True
    if response.status_code in (401, 403):
        _log(info, logging.WARNING, "LLM check: %s rejected OPENAI_API_KEY (HTTP %d) when listing models",
             where, response.status_code)
        return
    if response.status_code != 200:
        _log(info, logging.INFO, "LLM check: %s has no model list (GET /models: HTTP %d); LLM_MODEL=%r not "
             "checked", where, response.status_code, settings.llm_model)
        return
    try:
        data = response.json().get("data") or []
        ids = [str(m.get("id")) for m in data if isinstance(m, dict) and m.get("id")]
    except (ValueError, AttributeError):
        _log(info, logging.INFO, "LLM check: %s sent a model list that is not JSON; LLM_MODEL not checked", where)
        return
    info.models = ids
    info.model_listed = settings.llm_model in ids
    if info.model_listed:
        _log(info, logging.INFO, "LLM check: %s serves LLM_MODEL=%r", where, settings.llm_model)
    else:
        shown = ", ".join(repr(i) for i in ids[:5]) + (", ..." if len(ids) > 5 else "") or "none"
        _log(info, logging.WARNING, "LLM check: LLM_MODEL=%r is not among the models %s lists (%s). Servers "
             "that ignore the model name (llama.cpp) answer with their own model anyway; others will fail "
             "with 404. Set LLM_MODEL to one of the listed names.", settings.llm_model, where, shown)


def _find_tokenizer(client: httpx.Client, settings: Settings, info: ServerInfo, where: str) -> None:
    if not settings.openai_base_url or info.reachable is False:
        return  # OpenAI itself has no tokenizer route (tiktoken knows its models)
    root = server_root(settings.openai_base_url)
    from assistant.chat.llm_tokens import get_counter

    local = get_counter(settings.llm_model)
    for candidate in (Tokenizer(root + "/extras/tokenize/count", "count"), Tokenizer(root + "/tokenize", "tokenize")):
        try:
            response = client.post(candidate.url, json=_body(candidate, CALIBRATION_TEXT, settings.llm_model),
                                   headers=_headers(settings))
            count = _parse_count(response.json()) if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            count = None
        if not count:
            continue
        info.tokenizer = candidate
        base = local.raw_count(CALIBRATION_TEXT)
        info.token_scale = round(count / base, 3) if base else None
        _log(info, logging.INFO, "LLM check: prompt budgets use the tokenizer of %s (%s); the local %s "
             "count is off by a factor of %.3f on a sample", where, public_url(candidate.url),
             local.name, info.token_scale or math.nan)
        return
    _log(info, logging.INFO, "LLM check: %s exposes no tokenizer; prompt budgets use %s with a %.0f%% margin",
         where, local.name, local.margin * 100)


def inspect_server(settings: Settings) -> ServerInfo:
    """Check the endpoint (models, tokenizer); log one line per finding. Never raises."""
    info = ServerInfo()
    where = public_url(settings.openai_base_url) if settings.openai_base_url else "the OpenAI API"
    try:
        with httpx.Client(timeout=CHECK_TIMEOUT) as client:
            _check_models(client, settings, info, where)
            _find_tokenizer(client, settings, info, where)
    except Exception as exc:  # a start-up check must never stop the app
        log.warning("LLM check failed unexpectedly: %s", exc, exc_info=True)
    return info
