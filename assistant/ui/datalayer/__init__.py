"""Chainlit's data layer on our own PostgreSQL tables (threads, steps, elements, users, feedback).

`layer.ChatDataLayer` is what `@cl.data_layer` returns; `schema` holds the tables and their
migrations; `rows` converts rows to Chainlit's dicts and decides who may write where. It reaches
the database through the shared connection pool only (`retrieval.database.Connections`), never
through the retriever, so chat history does not wait for the embedding model.
"""

from assistant.ui.datalayer.layer import RATING_NOT_SAVED, AccessDenied, ChatDataLayer
from assistant.ui.datalayer.schema import CHAT_SCHEMA_STEPS, ensure_chat_schema
from assistant.ui.user_scope import acting_as

__all__ = ["CHAT_SCHEMA_STEPS", "RATING_NOT_SAVED", "AccessDenied", "ChatDataLayer", "acting_as",
           "ensure_chat_schema"]
