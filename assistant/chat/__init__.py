"""Answer generation: condensing, prompt budget, LLM streaming, citations, extractive fallback.

The UI drives `ChatPipeline.run()` and renders the events it yields; everything here is testable
without a browser. Importing this package does not import `openai` (only `LLMClient` use does).
"""

from assistant.chat.citations import CitationResult, StreamingCitationFilter, also_retrieved, parse_citations
from assistant.chat.events import Answer, Event, QueryRewritten, Retrieved, Token
from assistant.chat.extractive import extractive_answer
from assistant.chat.llm import Delta, LLMClient, LLMError
from assistant.chat.llm_tokens import TokenCounter, get_counter
from assistant.chat.pipeline import ChatPipeline, is_relevant, validate_question
from assistant.chat.prompts import PROMPTS_DIR, AssembledPrompt, assemble_answer_prompt, load_prompts

__all__ = [
    "PROMPTS_DIR",
    "Answer",
    "AssembledPrompt",
    "ChatPipeline",
    "CitationResult",
    "Delta",
    "Event",
    "LLMClient",
    "LLMError",
    "QueryRewritten",
    "Retrieved",
    "StreamingCitationFilter",
    "Token",
    "TokenCounter",
    "also_retrieved",
    "assemble_answer_prompt",
    "extractive_answer",
    "get_counter",
    "is_relevant",
    "load_prompts",
    "parse_citations",
    "validate_question",
]
