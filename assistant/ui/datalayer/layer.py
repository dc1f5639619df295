"""Chainlit's data layer on our own PostgreSQL tables: threads, steps, elements, users, feedback.

Two reasons it exists. Feedback thumbs only appear when a data layer is configured, and they are
the quickest way to find where the documents or retrieval fall short. And with `DATABASE_URL` set
and no `@cl.data_layer`, Chainlit would start its own asyncpg + Prisma data layer on the same
database, expecting tables it never creates. This one runs on the shared psycopg pool (opened
before the embedding model, so history loads while search is still warming up), in tables made
by `schema.ensure_chat_schema`, and stores each rating with the question, the
answer and the sources that were shown (a snapshot: documents may be re-ingested later).

Writes Chainlit fires in the background (steps, elements) log a warning when the database is
away instead of failing the chat; feedback raises, so the user sees it was not saved.

Conversations belong to the user who had them. Every method acts for `acting_user()`: the user
signed in on this HTTP request (recorded by `install_user_scope`) or in this chat session. A user
reads, lists, renames and deletes only their own threads, and rates or un-rates only messages in
them; a write into someone else's thread is refused (logged, or `AccessDenied` for feedback).
Chainlit itself checks thread authors on most routes, but not on `/feedback`, and checks at
connect time with no user in scope: calls without a signed-in user (no login configured,
Chainlit's own checks, maintenance code) are not restricted.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
from chainlit.data.base import BaseDataLayer
from chainlit.data.utils import queue_until_user_message
from chainlit.types import Feedback, PageInfo, PaginatedResponse, Pagination, ThreadDict, ThreadFilter
from chainlit.user import PersistedUser, User
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from assistant.retrieval.errors import AssistantError, DatabaseError
from assistant.retrieval.sanitize import storable, storable_data
from assistant.ui.datalayer.rows import (
    MINE,
    NOT_OTHERS_THREAD,
    OWN_THREAD,
    element_dict,
    iso,
    save_step,
    step_dict,
    thread_dict,
    writable_thread,
)
from assistant.ui.datalayer.schema import ensure_chat_schema
from assistant.ui.user_scope import acting_user

if TYPE_CHECKING:
    from chainlit.element import Element, ElementDict
    from chainlit.step import StepDict

    from assistant.retrieval.database import Connections

log = logging.getLogger(__name__)
T = TypeVar("T")
NAME_LIMIT = 255


class AccessDenied(AssistantError):
    """The signed-in user asked for another user's conversation or rating."""


RATING_NOT_SAVED = ("The rating could not be saved: the database is not reachable right now."
                    " Please try again in a moment.")


class ChatDataLayer(BaseDataLayer):
    """A small, real Chainlit data layer over the shared connection pool."""

    def __init__(self, database: Callable[[], Connections]) -> None:
        # The pool is opened by the shared Runtime (on first use, or by its warm-up): fetched lazily.
        self._database = database
        self._migrated: set[int] = set()

    # -- plumbing --------------------------------------------------------------------------

    def _db(self) -> Connections:
        db = self._database()
        if id(db) not in self._migrated:
            ensure_chat_schema(db)
            self._migrated.add(id(db))
        return db

    async def _run(self, fn: Callable[[psycopg.Connection], T]) -> T:
        """Run `fn(conn)` in a worker thread on a pooled connection, in one transaction."""

        def work() -> T:
            with self._db().connection() as conn, conn.transaction():
                return fn(conn)

        return await asyncio.to_thread(work)

    async def _background(self, what: str, fn: Callable[[psycopg.Connection], Any]) -> None:
        """For writes Chainlit fires and forgets: a database outage is a warning, not a crash."""
        try:
            await self._run(fn)
        except (AssistantError, psycopg.Error) as err:
            log.warning("could not save %s: %s", what, " ".join(str(err).split())[:300])

    async def _user_write(self, what: str, fn: Callable[[psycopg.Connection], T]) -> T:
        """For writes the user waits for (ratings): Chainlit shows the error's text in a toast, so an
        outage becomes a plain sentence there; the host and the driver's reason go to the log."""
        try:
            return await self._run(fn)
        except DatabaseError as err:
            log.warning("could not save a %s: %s", what, " ".join(str(err).split())[:300])
            raise DatabaseError(RATING_NOT_SAVED) from None

    # -- users -----------------------------------------------------------------------------

    async def get_user(self, identifier: str) -> PersistedUser | None:
        def q(conn: psycopg.Connection) -> dict[str, Any] | None:
            with conn.cursor(row_factory=dict_row) as cur:
                return cur.execute("SELECT * FROM chat_users WHERE identifier = %s", (identifier,)).fetchone()

        row = await self._run(q)
        if row is None:
            return None
        return PersistedUser(id=row["id"], identifier=row["identifier"], metadata=row["metadata"],
                             createdAt=iso(row["created_at"]) or "")

    async def create_user(self, user: User) -> PersistedUser | None:
        def q(conn: psycopg.Connection) -> dict[str, Any]:
            with conn.cursor(row_factory=dict_row) as cur:
                return cur.execute(
                    """INSERT INTO chat_users (id, identifier, metadata) VALUES (%s, %s, %s)
                       ON CONFLICT (identifier) DO UPDATE SET metadata = EXCLUDED.metadata
                       RETURNING *""",
                    (str(uuid.uuid4()), user.identifier, Jsonb(user.metadata or {})),
                ).fetchone()

        row = await self._run(q)
        return PersistedUser(id=row["id"], identifier=row["identifier"], metadata=row["metadata"],
                             createdAt=iso(row["created_at"]) or "")

    # -- feedback --------------------------------------------------------------------------

    async def upsert_feedback(self, feedback: Feedback) -> str:
        """Save a thumbs up/down with a snapshot of the question, answer and sources it rates.

        The full-page UI rates the *run* (Chainlit's `on_message` step, whose input is the
        question) rather than the answer message itself, so the answer is looked up among the rated
        step and its child assistant messages: the one carrying our metadata wins.
        """
        feedback_id = feedback.id or str(uuid.uuid4())
        me = acting_user()

        def q(conn: psycopg.Connection) -> str:
            # The rated step's own thread decides whose rating this is, not the thread id the client sent.
            target = conn.execute(
                "SELECT coalesce((SELECT thread_id FROM chat_steps WHERE id = %s), %s::text)",
                (feedback.forId, feedback.threadId),
            ).fetchone()
            if me is not None and not conn.execute(
                "SELECT 1 FROM chat_threads WHERE id = %s AND user_identifier = %s", (target[0], me)
            ).fetchone():
                raise AccessDenied("That message is not in one of your conversations; the rating was not saved")
            row = conn.execute(
                """
                INSERT INTO chat_feedback (id, step_id, thread_id, value, comment, question, answer, sources)
                SELECT %(id)s, %(step)s, coalesce(r.thread_id, %(thread)s), %(value)s, %(comment)s,
                       coalesce(a.metadata->>'question', nullif(r.input, ''),
                                (SELECT u.output FROM chat_steps u
                                  WHERE u.thread_id = a.thread_id AND u.type = 'user_message'
                                    AND u.created_at <= a.created_at
                                  ORDER BY u.created_at DESC LIMIT 1)),
                       coalesce(a.metadata->>'answer', nullif(a.output, '')),
                       coalesce(a.metadata->'sources', '[]'::jsonb)
                FROM (SELECT 1) AS one
                LEFT JOIN chat_steps r ON r.id = %(step)s
                LEFT JOIN LATERAL (
                    SELECT c.* FROM chat_steps c
                    WHERE c.id = r.id OR (c.parent_id = r.id AND c.type = 'assistant_message')
                    ORDER BY (c.metadata ? 'answer') DESC, (c.type = 'assistant_message') DESC, c.created_at DESC
                    LIMIT 1) AS a ON true
                ON CONFLICT (step_id) DO UPDATE SET
                    value = EXCLUDED.value, comment = EXCLUDED.comment, updated_at = now(),
                    question = coalesce(EXCLUDED.question, chat_feedback.question),
                    answer = coalesce(EXCLUDED.answer, chat_feedback.answer),
                    sources = CASE WHEN EXCLUDED.sources = '[]'::jsonb THEN chat_feedback.sources
                                   ELSE EXCLUDED.sources END
                RETURNING id
                """,
                {"id": feedback_id, "step": feedback.forId, "thread": feedback.threadId,
                 "value": int(feedback.value), "comment": feedback.comment and storable(feedback.comment)},
            ).fetchone()
            return str(row[0])

        return await self._user_write("rating", q)

    async def delete_feedback(self, feedback_id: str) -> bool:
        me = acting_user()

        def q(conn: psycopg.Connection) -> bool:
            sql = "DELETE FROM chat_feedback WHERE id = %(id)s AND " + OWN_THREAD.format(col="thread_id")
            return conn.execute(sql, {"id": feedback_id, "me": me}).rowcount > 0

        return await self._user_write("rating removal", q)

    # -- elements --------------------------------------------------------------------------

    @queue_until_user_message()
    async def create_element(self, element: Element) -> None:
        d = element.to_dict()
        me = acting_user()

        def q(conn: psycopg.Connection) -> None:
            if not writable_thread(conn, d.get("threadId"), me):
                log.warning("refused to save an element into another user's thread %s", d.get("threadId"))
                return
            conn.execute(
                """INSERT INTO chat_elements (id, thread_id, for_id, type, name, display, mime, url, chainlit_key,
                                              object_key, language, page, size, props)
                   VALUES (%(id)s, %(threadId)s, %(forId)s, %(type)s, %(name)s, %(display)s, %(mime)s, %(url)s,
                           %(chainlitKey)s, %(objectKey)s, %(language)s, %(page)s, %(size)s, %(props)s)
                   ON CONFLICT (id) DO UPDATE SET for_id = EXCLUDED.for_id, name = EXCLUDED.name,
                     display = EXCLUDED.display, url = EXCLUDED.url, chainlit_key = EXCLUDED.chainlit_key,
                     props = EXCLUDED.props
                   WHERE chat_elements.thread_id IS NOT DISTINCT FROM EXCLUDED.thread_id""",
                {**{k: d.get(k) for k in ("id", "threadId", "forId", "type", "name", "display", "mime", "url",
                                          "chainlitKey", "objectKey", "language", "page", "size")},
                 "props": Jsonb(d.get("props")) if d.get("props") is not None else None},
            )

        await self._background("an element", q)

    async def get_element(self, thread_id: str, element_id: str) -> ElementDict | None:
        me = acting_user()

        def q(conn: psycopg.Connection) -> dict[str, Any] | None:
            with conn.cursor(row_factory=dict_row) as cur:
                return cur.execute(
                    "SELECT * FROM chat_elements WHERE id = %(id)s AND thread_id = %(thread)s AND "
                    + OWN_THREAD.format(col="thread_id"),
                    {"id": element_id, "thread": thread_id, "me": me},
                ).fetchone()

        row = await self._run(q)
        return None if row is None else element_dict(row)

    @queue_until_user_message()
    async def delete_element(self, element_id: str, thread_id: str | None = None) -> None:
        me = acting_user()

        def q(conn: psycopg.Connection) -> None:
            conn.execute(
                "DELETE FROM chat_elements WHERE id = %(id)s AND (%(thread)s::text IS NULL OR thread_id = %(thread)s)"
                " AND " + NOT_OTHERS_THREAD.format(col="thread_id"),
                {"id": element_id, "thread": thread_id, "me": me},
            )

        await self._background("an element deletion", q)

    # -- steps -----------------------------------------------------------------------------

    @queue_until_user_message()
    async def create_step(self, step_dict: StepDict) -> None:
        step, me = storable_data(dict(step_dict)), acting_user()  # a NUL or lone surrogate typed in the chat
        await self._background("a chat step", lambda conn: save_step(conn, step, me))  # type: ignore[arg-type]

    @queue_until_user_message()
    async def update_step(self, step_dict: StepDict) -> None:
        step, me = storable_data(dict(step_dict)), acting_user()
        await self._background("a chat step", lambda conn: save_step(conn, step, me))  # type: ignore[arg-type]

    @queue_until_user_message()
    async def delete_step(self, step_id: str) -> None:
        me = acting_user()

        def q(conn: psycopg.Connection) -> None:
            args = {"id": step_id, "me": me}
            conn.execute("DELETE FROM chat_elements WHERE for_id = %(id)s AND "
                         + NOT_OTHERS_THREAD.format(col="thread_id"), args)
            conn.execute("DELETE FROM chat_steps WHERE id = %(id)s AND "
                         + NOT_OTHERS_THREAD.format(col="thread_id"), args)

        await self._background("a step deletion", q)

    async def get_favorite_steps(self, user_id: str) -> list[StepDict]:
        me = acting_user()

        def q(conn: psycopg.Connection) -> list[dict[str, Any]]:
            with conn.cursor(row_factory=dict_row) as cur:
                return cur.execute(
                    """SELECT s.*, NULL AS feedback_id, NULL AS feedback_value, NULL AS feedback_comment
                       FROM chat_steps s JOIN chat_threads t ON t.id = s.thread_id
                       WHERE t.user_id = %(user)s AND s.metadata->>'favorite' = 'true'
                         AND (%(me)s::text IS NULL OR t.user_identifier = %(me)s)
                       ORDER BY s.created_at DESC LIMIT 100""",
                    {"user": user_id, "me": me},
                ).fetchall()

        return [step_dict(r) for r in await self._run(q)]

    # -- threads ---------------------------------------------------------------------------

    async def get_thread_author(self, thread_id: str) -> str:
        def q(conn: psycopg.Connection) -> str:
            row = conn.execute("SELECT user_identifier FROM chat_threads WHERE id = %s", (thread_id,)).fetchone()
            return (row[0] or "") if row else ""

        return await self._run(q)

    async def delete_thread(self, thread_id: str) -> None:
        me = acting_user()

        def q(conn: psycopg.Connection) -> None:
            conn.execute("DELETE FROM chat_threads WHERE id = %(id)s AND " + MINE, {"id": thread_id, "me": me})

        await self._run(q)

    async def update_thread(self, thread_id: str, name: str | None = None, user_id: str | None = None,
                            metadata: dict | None = None, tags: list[str] | None = None) -> None:
        me = acting_user()

        def q(conn: psycopg.Connection) -> None:
            identifier = None
            if user_id:
                row = conn.execute("SELECT identifier FROM chat_users WHERE id = %s", (user_id,)).fetchone()
                identifier = row[0] if row else None
            if me is not None:
                # Nobody gives a thread to someone else, and nobody edits or takes over another's thread.
                if (user_id and identifier != me) or not writable_thread(conn, thread_id, me):
                    log.warning("refused to update thread %s for another user", thread_id)
                    return
                identifier = me
            clean = storable_data({k: v for k, v in (metadata or {}).items() if v is not None})
            conn.execute(
                """INSERT INTO chat_threads (id, name, user_id, user_identifier, tags, metadata)
                   VALUES (%(id)s, %(name)s, %(user)s, %(ident)s, %(tags)s, %(meta)s)
                   ON CONFLICT (id) DO UPDATE SET
                     name = coalesce(EXCLUDED.name, chat_threads.name),
                     user_id = coalesce(EXCLUDED.user_id, chat_threads.user_id),
                     user_identifier = coalesce(EXCLUDED.user_identifier, chat_threads.user_identifier),
                     tags = coalesce(EXCLUDED.tags, chat_threads.tags),
                     metadata = chat_threads.metadata || EXCLUDED.metadata,
                     updated_at = now()""",
                {"id": thread_id, "name": (name or None) and storable(name[:NAME_LIMIT]), "user": user_id,
                 "ident": identifier, "tags": storable_data(tags), "meta": Jsonb(clean)},
            )

        await self._background("a thread", q)

    async def list_threads(self, pagination: Pagination, filters: ThreadFilter) -> PaginatedResponse[ThreadDict]:
        me = acting_user()

        def q(conn: psycopg.Connection) -> list[dict[str, Any]]:
            where = ["TRUE"]
            args: dict[str, Any] = {"limit": pagination.first + 1}
            if filters.userId:
                where.append("t.user_id = %(user)s")
                args["user"] = filters.userId
            if me is not None:
                where.append("t.user_identifier = %(me)s")
                args["me"] = me
            if filters.search:
                where.append("(t.name ILIKE %(search)s OR EXISTS (SELECT 1 FROM chat_steps s"
                             " WHERE s.thread_id = t.id AND s.output ILIKE %(search)s))")
                args["search"] = "%" + filters.search.replace("%", r"\%").replace("_", r"\_") + "%"
            if filters.feedback is not None:
                where.append("EXISTS (SELECT 1 FROM chat_feedback f WHERE f.thread_id = t.id AND f.value = %(fb)s)")
                args["fb"] = int(filters.feedback)
            if pagination.cursor:
                where.append("(t.updated_at, t.id) < (SELECT updated_at, id FROM chat_threads WHERE id = %(cursor)s)")
                args["cursor"] = pagination.cursor
            sql = ("SELECT t.* FROM chat_threads t WHERE " + " AND ".join(where)
                   + " ORDER BY t.updated_at DESC, t.id DESC LIMIT %(limit)s")
            with conn.cursor(row_factory=dict_row) as cur:
                return cur.execute(sql, args).fetchall()  # type: ignore[arg-type]

        rows = await self._run(q)
        has_next = len(rows) > pagination.first
        rows = rows[: pagination.first]
        data = [thread_dict(r, [], []) for r in rows]
        return PaginatedResponse(
            pageInfo=PageInfo(hasNextPage=has_next, startCursor=rows[0]["id"] if rows else None,
                              endCursor=rows[-1]["id"] if rows else None),
            data=data,
        )

    async def get_thread(self, thread_id: str) -> ThreadDict | None:
        me = acting_user()

        def q(conn: psycopg.Connection) -> tuple[Any, list[Any], list[Any]] | None:
            with conn.cursor(row_factory=dict_row) as cur:
                thread = cur.execute(
                    "SELECT * FROM chat_threads WHERE id = %(id)s AND " + MINE, {"id": thread_id, "me": me},
                ).fetchone()
                if thread is None:
                    return None
                steps = cur.execute(
                    """SELECT s.*, f.id AS feedback_id, f.value AS feedback_value, f.comment AS feedback_comment
                       FROM chat_steps s LEFT JOIN chat_feedback f ON f.step_id = s.id
                       WHERE s.thread_id = %s ORDER BY s.created_at, s.id""",
                    (thread_id,),
                ).fetchall()
                elements = cur.execute("SELECT * FROM chat_elements WHERE thread_id = %s ORDER BY created_at",
                                       (thread_id,)).fetchall()
            return thread, steps, elements

        found = await self._run(q)
        if found is None:
            return None
        thread, steps, elements = found
        return thread_dict(thread, [step_dict(s) for s in steps],
                                 [element_dict(e) for e in elements])

    async def build_debug_url(self) -> str:
        return ""

    async def close(self) -> None:
        """Nothing to close: the pool belongs to the shared Runtime."""
