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
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from assistant.config import Settings
from assistant.retrieval.errors import AssistantError, hide_url_credentials, public_url, redact_secrets

log = logging.getLogger(__name__)
hide_url_credentials("httpx2")  # the openai client's HTTP library logs each request URL

T = TypeVar("T")


class LLMError(AssistantError):
    """The language model could not answer; `kind` says why (for notices and tests)."""

    def __init__(self, message: str, *, kind: str, status: int | None = None) -> None:
        super().__init__(message)
        # auth | not_found | rate_limit | server | timeout | deadline | connection | bad_request | other
        self.kind = kind
        self.status = status


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
    text = " ".join(str(message or "").split())
    return text[:160] + ("\u2026" if len(text) > 160 else "")


def map_error(exc: BaseException, settings: Settings) -> LLMError:
    """Turn an `openai` exception into an LLMError that names the setting to check (never the key)."""
    error = _map_error(exc, settings)
    key = settings.openai_api_key
    if key and key in str(error):  # some servers echo a rejected key in their error message
        error = LLMError(redact_secrets(str(error), [key]), kind=error.kind, status=error.status)
    return error


def _map_error(exc: BaseException, settings: Settings) -> LLMError:
    import openai

    model = settings.llm_model
    where = public_url(settings.openai_base_url) if settings.openai_base_url else "the OpenAI API"
    if isinstance(exc, LLMError):
        return exc
    if isinstance(exc, openai.APITimeoutError):
        return LLMError(
            f"The language model timed out after {settings.llm_timeout:g} s (LLM_TIMEOUT)", kind="timeout"
        )
    if isinstance(exc, openai.APIConnectionError):
        return LLMError(f"Could not reach the language model at {where}; check OPENAI_BASE_URL", kind="connection")
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        detail = _detail(exc)
        if status in (401, 403):
            return LLMError(
                f"The language model rejected the API key (HTTP {status}); check OPENAI_API_KEY",
                kind="auth",
                status=status,
            )
        if status == 404:
            return LLMError(
                f"The language model {model!r} was not found at {where} (HTTP 404); check LLM_MODEL",
                kind="not_found",
                status=status,
            )
        if status == 429:
            code = ""
            body = getattr(exc, "body", None)
            if isinstance(body, dict):
                err = body.get("error", body)
                code = str(err.get("code") or err.get("type") or "") if isinstance(err, dict) else ""
            if "quota" in code:
                return LLMError(
                    "The language model account has no quota left (HTTP 429); check the provider's billing",
                    kind="rate_limit",
                    status=status,
                )
            return LLMError(
                "The language model is rate limited (HTTP 429); wait a minute and try again",
                kind="rate_limit",
                status=status,
            )
        if status >= 500:
            return LLMError(
                f"The language model service failed (HTTP {status}); try again later", kind="server", status=status
            )
        suffix = f": {detail}" if detail else ""
        return LLMError(
            f"The language model rejected the request (HTTP {status}){suffix}", kind="bad_request", status=status
        )
    if isinstance(exc, openai.OpenAIError):
        return LLMError(f"The language model call failed: {' '.join(str(exc).split())[:160]}", kind="other")
    # Raised while reading a stream, where the openai client passes transport and parsing errors on.
    if isinstance(exc, httpx.TimeoutException):
        return LLMError(
            f"The language model timed out after {settings.llm_timeout:g} s (LLM_TIMEOUT)", kind="timeout"
        )
    if isinstance(exc, httpx.TransportError):
        return LLMError(f"The connection to the language model at {where} broke off", kind="connection")
    if isinstance(exc, ValueError):  # json.JSONDecodeError and friends: not an OpenAI-compatible stream
        return LLMError(
            f"The language model at {where} sent a malformed answer; check OPENAI_BASE_URL", kind="other"
        )
    return LLMError(f"The language model call failed ({type(exc).__name__})", kind="other")


def deadline_error(settings: Settings) -> LLMError:
    """The error for a call that ran past LLM_DEADLINE."""
    return LLMError(f"The language model took longer than LLM_DEADLINE={settings.llm_deadline:g} s", kind="deadline")


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

    async def stream_chat(
        self, messages: list[dict[str, str]], *, max_tokens: int, temperature: float = 0.2
    ) -> AsyncIterator[Delta]:
        """Stream the answer as Deltas; raises LLMError (before or during the stream, or at LLM_DEADLINE).

        The deadline is checked while waiting for the server only, never while the consumer
        holds a yielded Delta, so a slow consumer is not mistaken for a slow model.
        """
        import openai

        deadline = asyncio.get_running_loop().time() + self.settings.llm_deadline
        stream = None
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
                choices = getattr(chunk, "choices", None) or []
                if not choices:
                    continue
                choice = choices[0]
                delta = getattr(choice, "delta", None)
                text = (getattr(delta, "content", None) or "") if delta is not None else ""
                if text or choice.finish_reason:
                    yield Delta(text, choice.finish_reason)
        except Exception as exc:  # openai, transport and parsing errors alike become one-line LLMErrors
            if not isinstance(exc, (LLMError, openai.OpenAIError, httpx.HTTPError, ValueError)):
                log.warning("unexpected LLM stream failure", exc_info=True)  # a bug: keep the traceback in the log
            raise map_error(exc, self.settings) from exc
        finally:
            if stream is not None:
                try:
                    await stream.close()
                except Exception:  # closing a broken stream may fail again; nothing to do
                    log.debug("closing the LLM stream failed", exc_info=True)

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
        """Release the HTTP connection pool."""
        await self._client.close()
