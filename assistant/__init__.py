"""Doc Assistant: a small-footprint RAG chat assistant over your own documents.

Kept import-free on purpose: `assistant.retrieval` must load without the chat stack.
"""

__version__ = "0.1.0"
