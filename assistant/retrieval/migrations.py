"""Idempotent, versioned schema migrations shared by the retrieval store and the chat app.

Each namespace ("retrieval", "chat") has an ordered list of steps; the applied version is kept in
`schema_migrations`. Steps run in one transaction under an advisory lock, so two processes
starting together (the app and an ingest) never race, and a failed step leaves nothing behind.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import psycopg

Step = str | Callable[[psycopg.Connection], None]

MIGRATION_LOCK_KEY = 0x6_D0C_A551  # arbitrary, constant: "doc assistant"


def migrate(conn: psycopg.Connection, namespace: str, steps: Sequence[Step]) -> int:
    """Apply the steps of `namespace` not applied yet; returns how many ran."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " namespace text PRIMARY KEY, version int NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        row = conn.execute("SELECT version FROM schema_migrations WHERE namespace = %s", (namespace,)).fetchone()
        current = row[0] if row else 0
        for step in steps[current:]:
            if callable(step):
                step(conn)
            else:
                conn.execute(step)  # type: ignore[arg-type]
        if len(steps) > current:
            conn.execute(
                "INSERT INTO schema_migrations (namespace, version) VALUES (%s, %s)"
                " ON CONFLICT (namespace) DO UPDATE SET version = EXCLUDED.version, applied_at = now()",
                (namespace, len(steps)),
            )
        return max(0, len(steps) - current)
