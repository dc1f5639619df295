"""The chat's tables (threads, steps, elements, users, feedback) and their migrations.

Created by `migrate(conn, "chat", CHAT_SCHEMA_STEPS)` on the shared connection pool, beside (and
independent of) the retrieval tables: the chat history can open before the embedding model loads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from assistant.retrieval.migrations import migrate

if TYPE_CHECKING:
    from assistant.retrieval.database import Connections

# Append only: never edit a shipped step (migrate() applies the ones a database has not seen).
CHAT_SCHEMA_STEPS: list[str] = [
    """
    CREATE TABLE IF NOT EXISTS chat_users (
        id text PRIMARY KEY,
        identifier text NOT NULL UNIQUE,
        metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
        created_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE IF NOT EXISTS chat_threads (
        id text PRIMARY KEY,
        name text,
        user_id text,
        user_identifier text,
        tags text[],
        metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX IF NOT EXISTS chat_threads_user ON chat_threads (user_id, updated_at DESC);
    CREATE TABLE IF NOT EXISTS chat_steps (
        id text PRIMARY KEY,
        thread_id text NOT NULL REFERENCES chat_threads(id) ON DELETE CASCADE,
        parent_id text,
        name text,
        type text NOT NULL,
        input text,
        output text,
        metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
        tags text[],
        is_error boolean NOT NULL DEFAULT false,
        show_input jsonb,
        default_open boolean,
        auto_collapse boolean,
        language text,
        icon text,
        command text,
        generation jsonb,
        created_at timestamptz NOT NULL DEFAULT now(),
        start_at timestamptz,
        end_at timestamptz
    );
    CREATE INDEX IF NOT EXISTS chat_steps_thread ON chat_steps (thread_id, created_at);
    CREATE TABLE IF NOT EXISTS chat_elements (
        id text PRIMARY KEY,
        thread_id text REFERENCES chat_threads(id) ON DELETE CASCADE,
        for_id text,
        type text,
        name text,
        display text,
        mime text,
        url text,
        chainlit_key text,
        object_key text,
        language text,
        page int,
        size text,
        props jsonb,
        created_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX IF NOT EXISTS chat_elements_thread ON chat_elements (thread_id);
    CREATE TABLE IF NOT EXISTS chat_feedback (
        id text PRIMARY KEY,
        step_id text NOT NULL UNIQUE,
        thread_id text,
        value smallint NOT NULL CHECK (value IN (0, 1)),
        comment text,
        question text,
        answer text,
        sources jsonb NOT NULL DEFAULT '[]'::jsonb,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE INDEX IF NOT EXISTS chat_feedback_value ON chat_feedback (value, created_at DESC);
    """,
    # Threads are listed per signed-in user (by identifier) since the login arrived.
    "CREATE INDEX IF NOT EXISTS chat_threads_owner ON chat_threads (user_identifier, updated_at DESC);",
]



def ensure_chat_schema(db: Connections) -> int:
    """Create or upgrade the chat tables; returns how many migration steps ran."""
    with db.connection() as conn:
        return migrate(conn, "chat", CHAT_SCHEMA_STEPS)
