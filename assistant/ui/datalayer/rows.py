"""Rows of the chat tables <-> Chainlit's dicts, and who may write where.

Conversations belong to the user who had them (see `layer.py`): `writable_thread` and the SQL
conditions below restrict every statement to `acting_user()` (`%(me)s`; NULL: unrestricted).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

import psycopg
from chainlit.types import ThreadDict
from psycopg.types.json import Jsonb

if TYPE_CHECKING:
    from chainlit.element import ElementDict
    from chainlit.step import StepDict

log = logging.getLogger(__name__)

# SQL conditions: `%(me)s` is acting_user(); NULL means unrestricted.
MINE = "(%(me)s::text IS NULL OR user_identifier = %(me)s)"  # on chat_threads
OWN_THREAD = ("(%(me)s::text IS NULL OR EXISTS (SELECT 1 FROM chat_threads o"
              " WHERE o.id = {col} AND o.user_identifier = %(me)s))")
NOT_OTHERS_THREAD = ("(%(me)s::text IS NULL OR {col} IS NULL OR NOT EXISTS (SELECT 1 FROM chat_threads o"
                     " WHERE o.id = {col} AND o.user_identifier <> %(me)s))")


def writable_thread(conn: psycopg.Connection, thread_id: str | None, me: str | None) -> bool:
    """Make sure the thread row exists (owned by `me` when new); whether `me` may write to it."""
    if not thread_id:
        return True
    if me is None:
        conn.execute("INSERT INTO chat_threads (id) VALUES (%s) ON CONFLICT DO NOTHING", (thread_id,))
        return True
    row = conn.execute(
        """WITH made AS (
               INSERT INTO chat_threads (id, user_id, user_identifier)
               VALUES (%(id)s, (SELECT id FROM chat_users WHERE identifier = %(me)s), %(me)s)
               ON CONFLICT (id) DO NOTHING RETURNING user_identifier)
           SELECT user_identifier FROM made
           UNION ALL SELECT user_identifier FROM chat_threads WHERE id = %(id)s""",
        {"id": thread_id, "me": me},
    ).fetchone()
    return row is None or row[0] in (None, me)


def timestamp(value: Any) -> str | None:
    """A Chainlit ISO timestamp (with or without `Z`) for a timestamptz parameter, or None."""
    if not value:
        return None
    return str(value)


def iso(value: datetime | None) -> str | None:
    """A database timestamp as Chainlit's ISO text (UTC as `Z`)."""
    if value is None:
        return None
    return value.isoformat().replace("+00:00", "Z")



def save_step(conn: psycopg.Connection, step: StepDict, me: str | None) -> None:
    """Insert or update a step, unless it belongs to another user's thread (then: a warning)."""
    if not writable_thread(conn, step["threadId"], me):
        log.warning("refused to save a step into another user's thread %s", step["threadId"])
        return
    show_input = step.get("showInput")
    conn.execute(
        """INSERT INTO chat_steps (id, thread_id, parent_id, name, type, input, output, metadata, tags, is_error,
                                   show_input, default_open, auto_collapse, language, icon, command, generation,
                                   created_at, start_at, end_at)
           VALUES (%(id)s, %(thread)s, %(parent)s, %(name)s, %(type)s, %(input)s, %(output)s, %(metadata)s,
                   %(tags)s, %(is_error)s, %(show_input)s, %(default_open)s, %(auto_collapse)s, %(language)s,
                   %(icon)s, %(command)s, %(generation)s, coalesce(%(created)s::timestamptz, now()),
                   %(start)s::timestamptz, %(end)s::timestamptz)
           ON CONFLICT (id) DO UPDATE SET
             name = EXCLUDED.name, type = EXCLUDED.type, input = EXCLUDED.input, output = EXCLUDED.output,
             metadata = EXCLUDED.metadata, tags = EXCLUDED.tags, is_error = EXCLUDED.is_error,
             show_input = EXCLUDED.show_input, default_open = EXCLUDED.default_open,
             auto_collapse = EXCLUDED.auto_collapse, language = EXCLUDED.language, icon = EXCLUDED.icon,
             command = EXCLUDED.command, generation = EXCLUDED.generation,
             start_at = coalesce(EXCLUDED.start_at, chat_steps.start_at),
             end_at = coalesce(EXCLUDED.end_at, chat_steps.end_at)
           WHERE chat_steps.thread_id = EXCLUDED.thread_id""",
        {
            "id": step["id"], "thread": step["threadId"], "parent": step.get("parentId"),
            "name": step.get("name"), "type": step.get("type") or "undefined",
            "input": step.get("input"), "output": step.get("output"),
            "metadata": Jsonb(step.get("metadata") or {}), "tags": step.get("tags"),
            "is_error": bool(step.get("isError")),
            "show_input": Jsonb(show_input) if show_input is not None else None,
            "default_open": step.get("defaultOpen"), "auto_collapse": step.get("autoCollapse"),
            "language": step.get("language"), "icon": step.get("icon"), "command": step.get("command"),
            "generation": Jsonb(step["generation"]) if step.get("generation") else None,
            "created": timestamp(step.get("createdAt")), "start": timestamp(step.get("start")),
            "end": timestamp(step.get("end")),
        },
    )


def thread_dict(row: dict[str, Any], steps: list[Any], elements: list[Any]) -> ThreadDict:
    return ThreadDict(
        id=row["id"], createdAt=iso(row["created_at"]) or "", name=row["name"], userId=row["user_id"],
        userIdentifier=row["user_identifier"], tags=row["tags"], metadata=row["metadata"], steps=steps,
        elements=elements,
    )

def step_dict(row: dict[str, Any]) -> StepDict:
    step: dict[str, Any] = {
        "id": row["id"], "threadId": row["thread_id"], "parentId": row["parent_id"], "name": row["name"],
        "type": row["type"], "input": row["input"] or "", "output": row["output"] or "",
        "metadata": row["metadata"] or {}, "tags": row["tags"], "isError": row["is_error"],
        "showInput": row["show_input"], "defaultOpen": row["default_open"], "autoCollapse": row["auto_collapse"],
        "language": row["language"], "icon": row["icon"], "command": row["command"],
        "generation": row["generation"], "createdAt": iso(row["created_at"]), "start": iso(row["start_at"]),
        "end": iso(row["end_at"]), "streaming": False, "waitForAnswer": False,
    }
    if row.get("feedback_id"):
        step["feedback"] = {"id": row["feedback_id"], "forId": row["id"], "value": row["feedback_value"],
                            "comment": row["feedback_comment"]}
    return step  # type: ignore[return-value]

def element_dict(row: dict[str, Any]) -> ElementDict:
    return {  # type: ignore[return-value]
        "id": row["id"], "threadId": row["thread_id"], "forId": row["for_id"], "type": row["type"],
        "name": row["name"], "display": row["display"], "mime": row["mime"], "url": row["url"],
        "chainlitKey": row["chainlit_key"], "objectKey": row["object_key"], "language": row["language"],
        "page": row["page"], "size": row["size"], "props": row["props"],
    }
