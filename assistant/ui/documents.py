"""The `/documents` command: what is indexed, with counts, and removing a document with a confirmation.

`/documents` (picked from the composer's command menu, or typed) lists the newest documents with
totals by type and origin; `/documents words` lists those whose title or file matches. Each
document links to its original. For a person allowed to manage documents (see
`assistant.ui.uploads.may_manage`) every listed document gets a "Remove" button, which asks
first; the confirmation removes the document's rows through the store's one delete path and, for
a chat upload, its kept file. Action payloads come from the browser, so every callback checks
the permission again and looks the document up by id: a forged or repeated click gets one line.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import TYPE_CHECKING, Any

import chainlit as cl
from chainlit.context import context

from assistant.literal_markdown import escape_inline, link
from assistant.originals import original_path, session_base_url
from assistant.retrieval.errors import AssistantError, DatabaseError
from assistant.ui.upload_chat import current_user
from assistant.ui.uploads import is_upload, may_manage, refusal, remove_upload_file

if TYPE_CHECKING:
    from assistant.ui.runtime import Runtime

log = logging.getLogger(__name__)

COMMAND = "documents"
PAGE_SIZE = 10
DB_DOWN = "The document database is not reachable right now; try /documents again in a moment."
GONE = "That document is not indexed any more (it was already removed)."
ACT_LIST, ACT_ASK, ACT_REMOVE, ACT_KEEP = "documents_more", "document_remove_ask", "document_remove", "document_keep"


def commands() -> list[dict[str, Any]]:
    """The composer's commands (Chainlit shows them after `/` and as a button)."""
    return [{"id": COMMAND, "icon": "library", "description": "List the indexed documents (admins can remove one)",
             "button": True, "persistent": False}]


async def offer_commands() -> None:
    """Send the commands to this chat's composer (at chat start)."""
    await context.emitter.set_commands(commands())


def command_text(message: cl.Message) -> str | None:
    """The words after `/documents` when the message is that command, else None."""
    text = (message.content or "").strip()
    if getattr(message, "command", None) == COMMAND:
        return text.removeprefix("/" + COMMAND).strip()
    if text == "/" + COMMAND or text.startswith("/" + COMMAND + " "):
        return text[len(COMMAND) + 1:].strip()
    return None


def _origin(row: dict[str, Any], runtime: Runtime) -> str:
    source = row["source"]
    if "://" in source:
        return "web"
    return "uploaded" if is_upload(source, runtime.settings) else "file"


def _doc_link(row: dict[str, Any], base: str | None) -> str:
    title = row.get("title") or row.get("filename") or row["source"]
    url = row.get("url") or (row["source"] if "://" in row["source"] else None)
    if not url and base:
        url = base + original_path(row["id"])
    return link(title[:80], url)


def listing_markdown(rows: list[dict[str, Any]], stats: dict[str, Any], runtime: Runtime, *, contains: str,
                     offset: int, base: str | None) -> str:
    """The list as Markdown: totals, then one table row per document (all text escaped)."""
    docs, chunks = stats["documents"], stats["chunks"]
    lines = [f"**Indexed:** {docs} document{'s' if docs != 1 else ''} · {chunks} passages"]
    by_type = " · ".join(f"{escape_inline(t)} {v['documents']} ({v['chunks']} passages)"
                         for t, v in stats["by_type"].items())
    if by_type:
        lines.append(f"**By type:** {by_type}")
    origins = stats.get("by_origin") or {}
    if origins:
        lines.append("**By origin:** " + " · ".join(f"{k} {v}" for k, v in origins.items() if v))
    if contains:
        lines.append(f"**Matching** “{escape_inline(contains, 60)}”:")
    if not rows:
        lines.append("*No documents match.*" if contains or offset else
                     "*Nothing is indexed yet: attach a file to a message, or run `python -m assistant ingest`.*")
        return "\n\n".join(lines)
    table = ["| # | Document | Type | Passages | Origin | Updated |", "|---:|---|---|---:|---|---|"]
    for row in rows:
        updated = row["updated_at"].strftime("%Y-%m-%d %H:%M") if row.get("updated_at") else ""
        table.append(f"| {row['id']} | {_doc_link(row, base)} | {escape_inline(row.get('type') or '?')} |"
                     f" {row.get('chunk_count') or 0} | {_origin(row, runtime)} | {updated} |")
    lines.append("\n".join(table))
    return "\n\n".join(lines)


def _stats_with_origins(store: Any, settings: Any) -> dict[str, Any]:
    stats = store.document_stats()
    folder = settings.uploads_dir.expanduser().resolve().as_posix() + "/"
    counts = store.source_counts(folder)
    stats["by_origin"] = {"uploaded in the chat": counts["under_prefix"], "local files": counts["other_files"],
                          "web pages": counts["web"]}
    return stats


async def show_list(runtime: Runtime, contains: str = "", offset: int = 0) -> None:
    """Send one page of the document list (with Remove buttons for those allowed)."""
    try:
        store = (await runtime.aretriever()).store
        fetched = await asyncio.to_thread(store.documents, contains=contains, limit=PAGE_SIZE + 1, offset=offset)
        stats = await asyncio.to_thread(_stats_with_origins, store, runtime.settings)
    except DatabaseError:
        await cl.ErrorMessage(content=DB_DOWN).send()
        return
    except AssistantError as err:
        await cl.ErrorMessage(content=f"The list is not available: {' '.join(str(err).split())[:200]}").send()
        return
    rows, more = fetched[:PAGE_SIZE], len(fetched) > PAGE_SIZE
    content = listing_markdown(rows, stats, runtime, contains=contains, offset=offset, base=session_base_url())
    actions = []
    if may_manage(runtime.settings, current_user()):
        actions += [cl.Action(name=ACT_ASK, payload={"id": row["id"]}, icon="trash-2",
                              label="Remove " + _short(row.get("title") or row.get("filename") or "", 40),
                              tooltip=f"Remove document {row['id']} from the index (asks first)") for row in rows]
    if more:
        actions.append(cl.Action(name=ACT_LIST, payload={"contains": contains, "offset": offset + PAGE_SIZE},
                                 icon="chevrons-down", label="Show more"))
    await cl.Message(content=content, actions=actions, metadata={"documents_list": True}).send()


def _short(text: str, limit: int) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def _payload_id(action: cl.Action) -> int | None:
    value = (action.payload or {}).get("id")
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**63 else None


async def _allowed(runtime: Runtime) -> bool:
    if may_manage(runtime.settings, current_user()):
        return True
    await cl.ErrorMessage(content=refusal(runtime.settings)).send()
    return False


async def more(runtime: Runtime, action: cl.Action) -> None:
    """The "Show more" button: the next page of the same list."""
    payload = action.payload or {}
    offset = payload.get("offset")
    contains = payload.get("contains")
    await show_list(runtime, contains if isinstance(contains, str) else "",
                    offset if isinstance(offset, int) and 0 <= offset < 10**6 else 0)


async def ask_remove(runtime: Runtime, action: cl.Action) -> None:
    """A Remove button: say what would go, and ask for a confirmation."""
    if not await _allowed(runtime):
        return
    doc_id = _payload_id(action)
    try:
        store = (await runtime.aretriever()).store
        rows = await asyncio.to_thread(store.documents, ids=[doc_id], limit=1) if doc_id else []
    except DatabaseError:
        await cl.ErrorMessage(content=DB_DOWN).send()
        return
    if not rows:
        await cl.ErrorMessage(content=GONE).send()
        return
    row = rows[0]
    title = escape_inline(row.get("title") or row.get("filename") or row["source"], 80)
    if is_upload(row["source"], runtime.settings):
        after = "Its uploaded file is deleted too."
    elif "://" in row["source"]:
        after = "It comes back if the site is ingested again."
    else:
        after = "It comes back if its folder is ingested again."
    ids = [str(uuid.uuid4()), str(uuid.uuid4())]
    pair = {"id": row["id"], "pair": ids}
    await cl.Message(
        content=f"Remove **{title}** ({escape_inline(row.get('filename') or '')}, {row.get('chunk_count') or 0}"
                f" passages) from the index? {after}",
        actions=[cl.Action(id=ids[0], name=ACT_REMOVE, payload=pair, label="Yes, remove it", icon="trash-2"),
                 cl.Action(id=ids[1], name=ACT_KEEP, payload=pair, label="Keep it", icon="x")],
    ).send()


async def _drop_buttons(action: cl.Action) -> None:
    """Take both buttons of a confirmation away (a second click would only repeat the answer)."""
    for action_id in (action.payload or {}).get("pair") or []:
        if isinstance(action_id, str):
            await context.emitter.emit("remove_action", {"id": action_id, "forId": action.forId,
                                                         "name": action.name, "payload": {}})


async def keep(runtime: Runtime, action: cl.Action) -> None:
    """The confirmation's "Keep it"."""
    await _drop_buttons(action)
    await cl.Message(content="Kept it: nothing was removed.").send()


async def remove(runtime: Runtime, action: cl.Action) -> None:
    """The confirmation's "Yes, remove it": rows first (one transaction), then an upload's file."""
    if not await _allowed(runtime):
        return
    doc_id = _payload_id(action)
    try:
        store = (await runtime.aretriever()).store
        row = await asyncio.to_thread(store.delete_document, doc_id) if doc_id else None
        left = await asyncio.to_thread(store.document_count) if row else 0
    except DatabaseError:
        await cl.ErrorMessage(content=DB_DOWN.replace("try /documents again", "nothing was removed; try again")).send()
        return
    await _drop_buttons(action)
    if row is None:
        await cl.ErrorMessage(content=GONE).send()
        return
    file_gone = await asyncio.to_thread(remove_upload_file, row["source"], runtime.settings)
    runtime.forget_starters()
    log.info("document %s (%s) removed by %s", row["id"], row["source"], current_user() or "anonymous")
    title = escape_inline(row.get("title") or row.get("filename") or row["source"], 80)
    extra = " and its uploaded file" if file_gone else ""
    await cl.Message(content=f"Removed **{title}**{extra}: {row.get('chunk_count') or 0} passages."
                             f" {left} document{'s' if left != 1 else ''} remain{'s' if left == 1 else ''}.").send()
