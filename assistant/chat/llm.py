"""The OpenAI-compatible chat client: streaming deltas, and errors as one-line messages.

Any server speaking `/v1/chat/completions` works (OpenAI, Ollama, vLLM, LiteLLM, ...). Retries on
429/5xx/timeouts are the `openai` client's own (`LLM_MAX_RETRIES`, honouring `Retry-After`);
whatever still fails becomes an `LLMError` whose text says what to check, so the chat can show it
in one line and fall back to an extractive answer.

LLM_TIMEOUT bounds each request and each wait between streamed chunks, which does not bound a
server that trickles tokens forever; so every call also has a total deadline (LLM_DEADLINE,
retries and streaming included), after which it ends with an `LLMError` of kind "deadline".
Anything else that breaks mid-stream (a dropped connection, a malformed event) is mapped too:
no exception but `LLMError` leaves this module.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from assistant.config import Settings
from assistant.retrieval.errors import AssistantError, hide_url_credentials, public_url, redact_secrets

if TYPE_CHECKING:
    from assistant.chat.server import ServerInfo

log = logging.getLogger(__name__)
hide_url_credentials("httpx2")  # the openai client's HTTP library logs each request URL

T = TypeVar("T")


class LLMError(AssistantError):
    """The language model could not answer.

    `str(err)` is written for the reader of the chat: plain language, no endpoint URL, no setting
    names. `detail` is for the operator (the server log): where, which setting to check, what the
    server said. `kind` says why (for the pipeline's decisions and for tests).
    """

    def __init__(self, message: str, *, kind: str, status: int | None = None, detail: str | None = None,
                 context_limit: int | None = None) -> None:
        super().__init__(message)
        # auth | not_found | rate_limit | server | timeout | deadline | connection | broken | context
        # | empty | malformed | bad_request | other
        self.kind = kind
        self.status = status
        self.detail = detail or message
        self.context_limit = context_limit  # the server's context window, when its error said it
        self.prompt_tokens: int | None = None  # the rejected prompt's size in the server's tokens, if said
        self.events: int | None = None  # for kind="empty": stream events received (0: nothing at all)


@dataclass
class Delta:
    """One piece of a streamed answer; `finish_reason` is set on the last one ("stop", "length", ...)."""

    text: str = ""
    finish_reason: str | None = None


def _detail(exc: Any) -> str:
    """The provider's own short error message, if it sent one (first line, capped)."""
    body = getattr(exc, "body", None)
    message = None
    if isinstance(body, dict):
        inner = body.get("error", body)
        message = inner.get("message") if isinstance(inner, dict) else inner
    if message is None and isinstance(exc, Exception) and not getattr(exc, "status_code", None):
        message = getattr(exc, "message", None)
    text = " ".join(str(message or "").split())
    return text[:300] + ("\u2026" if len(text) > 300 else "")


def _code(exc: Any) -> str:
    """The provider's error code/type (`context_length_exceeded`, `insufficient_quota`...)."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            return str(err.get("code") or err.get("type") or "")
    return ""


_CONTEXT_WORDS = re.compile(
    r"context[ _](?:length|window|size)|maximum context|too many tokens|prompt is too long|exceeds? the context",
    re.IGNORECASE,
)
_CONTEXT_LIMIT = re.compile(r"(?:maximum context length|context window|context size|n_ctx)\D{0,20}(\d{3,9})",
                            re.IGNORECASE)

CONTEXT_HINT = ("Your question, with the conversation and the passages found, is too long for the language model; "
                "ask a shorter question or start a new chat")


_PROMPT_TOKENS = re.compile(r"(\d+) in the messages|n_prompt_tokens\D{0,5}(\d+)", re.IGNORECASE)


def context_error(detail: str, status: int | None = None) -> LLMError:
    """The error for a prompt over the server's context window; the window and the prompt's size
    in the server's tokens are parsed from its message when it gives them (OpenAI, vLLM and
    llama-cpp-python write "maximum context length is N tokens ... (M in the messages, ...)")."""
    found = _CONTEXT_LIMIT.search(detail or "")
    error = LLMError(CONTEXT_HINT, kind="context", status=status, detail=detail,
                     context_limit=int(found.group(1)) if found else None)
    used = _PROMPT_TOKENS.search(detail or "")
    error.prompt_tokens = int(used.group(1) or used.group(2)) if used else None
    return error


def map_error(exc: BaseException, settings: Settings, *, streaming: bool = False) -> LLMError:
    """Turn an `openai` (or transport) exception into an LLMError: a plain line for the reader,
    the operator detail (endpoint, setting to check) in `detail`, and never the API key.

    `streaming=True` means the answer had started arriving: a connection error then is a stream
    that broke off, not a server that could not be reached.
    """
    error = _map_error(exc, settings, streaming)
    key = settings.openai_api_key
    if key and (key in str(error) or key in error.detail):  # some servers echo a rejected key
        error = LLMError(redact_secrets(str(error), [key]), kind=error.kind, status=error.status,
                         detail=redact_secrets(error.detail, [key]), context_limit=error.context_limit)
    return error


def _where(settings: Settings) -> str:
    return public_url(settings.openai_base_url) if settings.openai_base_url else "the OpenAI API"


def _cause(exc: BaseException) -> str:
    inner = exc.__cause__ or exc.__context__
    text = " ".join(str(inner or exc).split())[:200]
    return f"{type(inner or exc).__name__}: {text}" if text else type(inner or exc).__name__


def _map_error(exc: BaseException, settings: Settings, streaming: bool) -> LLMError:
    import openai

    model = settings.llm_model
    where = _where(settings)
    if isinstance(exc, LLMError):
        return exc
    timed_out = isinstance(exc, (openai.APITimeoutError, httpx.TimeoutException)) or \
        type(exc).__name__.endswith("Timeout") or type(exc.__cause__).__name__.endswith("Timeout")
    if timed_out:
        return LLMError("The language model did not answer in time", kind="timeout",
                        detail=f"no data from {where} for {settings.llm_timeout:g} s (LLM_TIMEOUT)")
    if isinstance(exc, openai.APIConnectionError) or isinstance(exc, httpx.TransportError):
        if streaming:
            return LLMError("The connection to the language model broke off", kind="broken",
                            detail=f"the stream from {where} ended mid-answer ({_cause(exc)})")
        return LLMError("The language model could not be reached", kind="connection",
                        detail=f"could not connect to {where} ({_cause(exc)}); check OPENAI_BASE_URL "
                               "and that the server is running")
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        detail = _detail(exc)
        said = f": {detail}" if detail else ""
        if status in (401, 403):
            return LLMError("The language model rejected this site's API key", kind="auth", status=status,
                            detail=f"HTTP {status} from {where}{said}; check OPENAI_API_KEY")
        if status == 404:
            return LLMError("The language model configured for this site is not available", kind="not_found",
                            status=status, detail=f"model {model!r} not found at {where} (HTTP 404){said}; "
                                                  "check LLM_MODEL and OPENAI_BASE_URL")
        if status == 429:
            if "quota" in _code(exc):
                return LLMError("The language model's account has no quota left", kind="rate_limit",
                                status=status, detail=f"HTTP 429 from {where}{said}; check the provider's billing")
            return LLMError("The language model is busy (rate limited); wait a minute and try again",
                            kind="rate_limit", status=status, detail=f"HTTP 429 from {where}{said}")
        if status >= 500:
            return LLMError("The language model service failed; try again later", kind="server", status=status,
                            detail=f"HTTP {status} from {where}{said}")
        if _code(exc) == "context_length_exceeded" or _CONTEXT_WORDS.search(detail):
            return context_error(f"HTTP {status} from {where}{said}", status)
        return LLMError("The language model rejected the request", kind="bad_request", status=status,
                        detail=f"HTTP {status} from {where}{said}")
    if isinstance(exc, openai.APIError):  # an {"error": ...} event inside the stream
        detail = _detail(exc) or " ".join(str(exc).split())[:300]
        if _CONTEXT_WORDS.search(detail):
            return context_error(f"{where} reported: {detail}")
        return LLMError("The language model reported an error", kind="server", detail=f"{where} reported: {detail}")
    if isinstance(exc, openai.OpenAIError):
        return LLMError("The language model call failed", kind="other",
                        detail=f"{where}: {' '.join(str(exc).split())[:300]}")
    if isinstance(exc, ValueError):  # json.JSONDecodeError and friends: not an OpenAI-compatible stream
        return LLMError("The language model sent a reply that could not be read", kind="malformed",
                        detail=f"{where} sent a malformed stream ({_cause(exc)}); is OPENAI_BASE_URL an "
                               "OpenAI-compatible endpoint?")
    return LLMError("The language model call failed", kind="other", detail=f"{where}: {_cause(exc)}")


def deadline_error(settings: Settings) -> LLMError:
    """The error for a call that ran past LLM_DEADLINE."""
    return LLMError("The language model took too long to answer", kind="deadline",
                    detail=f"{_where(settings)} took longer than LLM_DEADLINE={settings.llm_deadline:g} s")


def empty_error(settings: Settings, events: int) -> LLMError:
    """The error for a stream that carried no answer text at all."""
    what = "no events at all" if events == 0 else f"{events} event(s) but no text"
    error = LLMError("The language model returned an empty answer", kind="empty",
                     detail=f"{_where(settings)} answered HTTP 200 with {what}")
    error.events = events
    return error


async def _before(deadline: float, awaitable: Awaitable[T], settings: Settings) -> T:
    """Await `awaitable` until the loop time `deadline`, then raise the deadline LLMError."""
    timeout = asyncio.timeout_at(deadline)
    try:
        async with timeout:
            return await awaitable
    except TimeoutError:
        if timeout.expired():
            raise deadline_error(settings) from None
        raise


class LLMClient:
    """Thin wrapper over `openai.AsyncOpenAI` with the product's settings and error mapping.

    One instance can serve many chat sessions concurrently (the underlying client is async-safe).
    `server` holds what the start-up check learnt about the endpoint (see `assistant.chat.server`):
    the models it serves and its own tokenizer, when it exposes one.
    """

    def __init__(self, settings: Settings, client: Any = None) -> None:
        import openai

        self.settings = settings
        self.model = settings.llm_model
        self._client = client or openai.AsyncOpenAI(
            api_key=settings.openai_api_key,
            base_url=settings.openai_base_url,
            timeout=settings.llm_timeout,
            max_retries=settings.llm_max_retries,
        )
        self.server: ServerInfo | None = None  # filled by check_server()
        self._http: httpx.AsyncClient | None = None  # for the server's tokenizer endpoint

    def check_server(self) -> ServerInfo:
        """Check the endpoint once (blocking; the app runs it during warm-up): log what was found."""
        from assistant.chat.server import inspect_server

        self.server = inspect_server(self.settings)
        return self.server

    async def count_tokens(self, text: str) -> int | None:
        """Tokens of `text` by the server's own tokenizer; None when it has none (or it failed)."""
        server = self.server
        if server is None or server.tokenizer is None:
            return None
        from assistant.chat.server import count_with

        if self._http is None:
            self._http = httpx.AsyncClient(timeout=min(5.0, self.settings.llm_timeout))
        try:
            return await count_with(self._http, server.tokenizer, text, self.settings)
        except Exception as exc:  # a budget check must never fail the answer
            log.info("the LLM server's tokenizer failed (%s); counting locally", exc)
            return None

    async def stream_chat(
        self, messages: list[dict[str, str]], *, max_tokens: int, temperature: float = 0.2
    ) -> AsyncIterator[Delta]:
        """Stream the answer as Deltas; raises LLMError (before or during the stream, or at LLM_DEADLINE).

        A stream that ends without any text raises LLMError(kind="empty"): llama.cpp's server
        answers a prompt over its context with HTTP 200 and no events at all, so the caller can
        ask `diagnose_empty()` what happened. A connection lost after the stream opened is
        kind="broken" (the text received so far was yielded already).

        The deadline is checked while waiting for the server only, never while the consumer
        holds a yielded Delta, so a slow consumer is not mistaken for a slow model.
        """
        import openai

        deadline = asyncio.get_running_loop().time() + self.settings.llm_deadline
        stream = None
        events = 0
        text_seen = False
        try:
            stream = await _before(deadline, self._client.chat.completions.create(
                model=self.model,
                messages=messages,
                max_tokens=max_tokens,
                temperature=temperature,
                stream=True,
            ), self.settings)
            chunks = stream.__aiter__()
            while True:
                try:
                    chunk = await _before(deadline, anext(chunks), self.settings)
                except StopAsyncIteration:
                    break
                events += 1
                choices = getattr(chunk, "choices", None) or []
                if not choices:
                    continue
                choice = choices[0]
                delta = getattr(choice, "delta", None)
                text = (getattr(delta, "content", None) or "") if delta is not None else ""
                text_seen = text_seen or bool(text)
                if text or choice.finish_reason:
                    yield Delta(text, choice.finish_reason)
        except Exception as exc:  # openai, transport and parsing errors alike become one-line LLMErrors
            if not isinstance(exc, (LLMError, openai.OpenAIError, httpx.HTTPError, ValueError)):
                log.warning("unexpected LLM stream failure", exc_info=True)  # a bug: keep the traceback in the log
            raise map_error(exc, self.settings, streaming=stream is not None and events > 0) from exc
        finally:
            if stream is not None:
                try:
                    await stream.close()
                except Exception:  # closing a broken stream may fail again; nothing to do
                    log.debug("closing the LLM stream failed", exc_info=True)
        if not text_seen:
            raise empty_error(self.settings, events)

    async def diagnose_empty(self, messages: list[dict[str, str]]) -> LLMError | None:
        """Why a stream came back empty: the same prompt, not streamed, with a one-token answer.

        llama.cpp's server rejects an over-long prompt only this way (HTTP 400
        `context_length_exceeded`), and before evaluating anything, so the check is fast then.
        Returns the context error, or None when the prompt was accepted (the model just said nothing).
        """
        for attempt in range(2):
            try:
                await self.complete(messages, max_tokens=1)
            except LLMError as err:
                if err.kind == "connection" and not attempt:
                    continue  # llama.cpp leaves the empty stream's keep-alive connection dead: a new one
                return err if err.kind == "context" else None
            return None
        return None

    async def complete(self, messages: list[dict[str, str]], *, max_tokens: int, temperature: float = 0.0) -> str:
        """One non-streamed completion (used to condense follow-up questions), bounded by LLM_DEADLINE."""
        deadline = asyncio.get_running_loop().time() + self.settings.llm_deadline
        try:
            response = await _before(deadline, self._client.chat.completions.create(
                model=self.model, messages=messages, max_tokens=max_tokens, temperature=temperature
            ), self.settings)
        except Exception as exc:
            raise map_error(exc, self.settings) from exc
        choices = getattr(response, "choices", None) or []
        if not choices or choices[0].message is None:
            return ""
        return choices[0].message.content or ""

    async def aclose(self) -> None:
        """Release the HTTP connection pools."""
        if self._http is not None:
            await self._http.aclose()
        await self._client.close()
