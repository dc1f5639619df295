"""The answer prompt's token budget: which tokens to count with, and how many the server holds.

The local count (`llm_tokens`) is an estimate for most open models, and LLM_CONTEXT_TOKENS may be
more than the server really has. `PromptBudget` keeps what the server taught us: the ratio of its
tokenizer to the local count (measured with its tokenizer when it exposes one, or read from an
overflow error) and its real context window, and builds answer prompts that fit both.
"""

from __future__ import annotations

import logging

from assistant.chat.llm import LLMClient, LLMError
from assistant.chat.llm_tokens import CALIBRATED_MARGIN, MESSAGE_OVERHEAD, REPLY_PRIMING, TokenCounter, get_counter
from assistant.chat.prompts import AssembledPrompt, PromptSet, assemble_answer_prompt, prompt_limit
from assistant.config import Settings
from assistant.retrieval.types import Hit

log = logging.getLogger(__name__)


class PromptBudget:
    """Token counting and context window for one LLM endpoint, calibrated as the server answers."""

    def __init__(self, settings: Settings, llm: LLMClient | None, prompts: PromptSet) -> None:
        self.settings = settings
        self.llm = llm
        self.prompts = prompts
        self._counter: TokenCounter | None = None
        self._token_scale: float | None = None  # measured with the server's tokenizer on real prompts
        self._server_context: int | None = None  # the server's context window, when an overflow told us
        if llm is not None:
            self._counter = get_counter(settings.llm_model)  # load the encoding before the first question

    @property
    def counter(self) -> TokenCounter:
        """The token counter for the configured model, calibrated to the server's tokenizer when known."""
        if self._counter is None:
            self._counter = get_counter(self.settings.llm_model)
        server = self.llm.server if self.llm is not None else None
        scale = self._token_scale or (server.token_scale if server is not None else None)
        return self._counter.scaled(scale) if scale else self._counter

    @property
    def context_tokens(self) -> int:
        """The context window to budget for: LLM_CONTEXT_TOKENS, or less if the server said so."""
        configured = self.settings.llm_context_tokens
        return min(configured, self._server_context) if self._server_context else configured

    def assemble(self, question: str, query: str, turns: list[dict[str, str]], hits: list[Hit],
                 compact: bool, counter: TokenCounter) -> AssembledPrompt:
        """The answer prompt for `question` counted with `counter`; with the standalone `query` when
        the conversation does not fit beside it."""

        def build(q: str) -> AssembledPrompt:
            return assemble_answer_prompt(
                q,
                hits,
                turns,
                prompts=self.prompts,
                counter=counter,
                context_tokens=self.context_tokens,
                max_answer_tokens=self.settings.llm_max_answer_tokens,
                compact=compact,
            )

        prompt = build(question)
        if query != question and turns and prompt.history_dropped >= len(turns):
            prompt = build(query)  # the conversation did not fit: the standalone question carries it
        return prompt

    async def fit(self, question: str, query: str, turns: list[dict[str, str]], hits: list[Hit],
                  compact: bool) -> AssembledPrompt:
        """The answer prompt within the budget, checked with the server's own tokenizer when it has one.

        The local count is an estimate for most open models; one call to the server's tokenizer
        per question measures the real size. If it is over, the prompt is rebuilt with the local
        count scaled to match (and the scale is kept for the next questions).
        """
        assert self.llm is not None
        prompt = self.assemble(question, query, turns, hits, compact, self.counter)
        text = "\n".join(m["content"] for m in prompt.messages)
        exact = await self.llm.count_tokens(text)
        if not exact:
            return prompt
        base = self._counter or get_counter(self.settings.llm_model)
        scale = exact / max(1, base.raw_count(text))
        self._token_scale = scale
        total = exact + MESSAGE_OVERHEAD * len(prompt.messages) + REPLY_PRIMING
        limit = prompt_limit(self.context_tokens, prompt.max_answer_tokens, CALIBRATED_MARGIN)
        if total > limit:
            log.info("prompt is %d tokens by the server's tokenizer (budget %d); rebuilding it", total, limit)
            prompt = self.assemble(question, query, turns, hits, compact, base.scaled(scale * 1.02))
        return prompt

    def learn_from_overflow(self, error: LLMError, prompt: AssembledPrompt) -> bool:
        """After an overflow: budget for what the server really holds. True when a retry may fit.

        The server's error usually says its window and the prompt's size in its own tokens: the
        window replaces LLM_CONTEXT_TOKENS when smaller, and the size calibrates our count.
        """
        learned = False
        limit = error.context_limit
        if limit and limit < self.context_tokens:
            log.warning("the LLM server's context window is %d tokens, below LLM_CONTEXT_TOKENS=%d: set "
                        "LLM_CONTEXT_TOKENS=%d (prompts are cut to fit until then)", limit,
                        self.settings.llm_context_tokens, limit)
            self._server_context = limit
            learned = True
        base = self._counter or get_counter(self.settings.llm_model)
        local = base.raw_count("\n".join(m["content"] for m in prompt.messages))
        current = self.counter.scale if self.counter.calibrated else 1.0
        if error.prompt_tokens and local:
            scale = error.prompt_tokens / local * 1.02
            if scale > current:
                log.warning("the LLM server counts %.2fx the tokens of the local count (%s); prompts are "
                            "budgeted with its ratio from now on", scale, base.name)
                self._token_scale = scale
                learned = True
        elif not learned and current < 1.3:  # no figures given: count more generously
            log.warning("the LLM server rejected a prompt as too long for its context (%s); counting tokens "
                        "15%% higher from now on. Check LLM_CONTEXT_TOKENS=%d against the server's context size.",
                        error.detail, self.settings.llm_context_tokens)
            self._token_scale = current * 1.15
            learned = True
        return learned
