"""`GET /healthz`: is this instance ready to answer questions?

Chainlit's own `GET /health` only says the process is alive. `/healthz` says whether the database
answers (one cheap query, plus the document count) and whether the embedder works. Embedding a
test question costs time (and credits with a paid API), so the embedder result is cached and
refreshed in the background; real searches update it too. 200 when ready, 503 otherwise, with a
JSON body a person can read: {status, database, embedder, documents, chat}. `chat` is the answer
pipeline, which finishes loading after search is ready (with an LLM, its client's import takes
seconds at 0.1 CPU): "starting: ..." there still answers 200, since a question asked then only
waits for it; a pipeline that failed to start answers 503.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from assistant.retrieval.errors import AssistantError
from assistant.ui.runtime import Runtime
from assistant.upstream_compat import add_route_first

log = logging.getLogger(__name__)

EMBEDDER_OK_TTL = 300.0  # seconds a good embedder check is trusted
EMBEDDER_ERROR_TTL = 15.0  # seconds before a failed check is retried


class HealthChecker:
    """Builds the /healthz report from the shared Runtime."""

    def __init__(self, runtime: Runtime | Callable[[], Runtime], *, ok_ttl: float = EMBEDDER_OK_TTL,
                 error_ttl: float = EMBEDDER_ERROR_TTL) -> None:
        self._runtime = runtime
        self.ok_ttl = ok_ttl
        self.error_ttl = error_ttl
        self._refreshing = threading.Lock()

    @property
    def runtime(self) -> Runtime:
        """The runtime to report on (a getter lets the app swap it, e.g. in tests)."""
        return self._runtime if isinstance(self._runtime, Runtime) else self._runtime()

    def report(self) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body). Blocking: a database round trip; run it off the event loop."""
        rt = self.runtime
        if not rt.ready:
            rt.start_warmup()  # a failed start is retried by the health checks themselves (idempotent)
        if not rt.searchable:
            reason = rt.error
            status = "error" if reason else "starting"
            detail = reason or "starting: opening the database and loading the embedding model"
            return 503, {"status": status, "database": detail, "embedder": rt.embedder_probe.detail,
                         "documents": None, "chat": "starting: waiting for search"}
        body: dict[str, Any] = {"status": "ok", "database": "ok", "embedder": "ok", "documents": None,
                                "chat": rt.chat_state}
        try:
            store = rt.retriever().store
            store.ping()
            body["documents"] = store.document_count()
        except AssistantError as err:
            body["database"] = " ".join(str(err).split())
        probe = rt.embedder_probe
        if probe.ok is None:
            rt.check_embedder()  # first report after start-up: check now
        elif probe.age() > (self.ok_ttl if probe.ok else self.error_ttl):
            self._refresh_in_background()
        body["embedder"] = probe.detail if probe.ok is not None else "not checked yet"
        chat_failed = not rt.ready and rt.error is not None
        ready = body["database"] == "ok" and probe.ok is True and not chat_failed
        body["status"] = "ok" if ready else "error"
        return (200 if ready else 503), body

    def _refresh_in_background(self) -> None:
        if not self._refreshing.acquire(blocking=False):
            return

        def run() -> None:
            try:
                self.runtime.check_embedder()
            finally:
                self._refreshing.release()

        threading.Thread(target=run, name="healthz-embedder", daemon=True).start()

    async def endpoint(self, request: Request) -> JSONResponse:
        """The Starlette endpoint."""
        try:
            status, body = await asyncio.to_thread(self.report)
        except Exception as exc:  # a bug here must still answer, and answer "not ready"
            log.exception("health check failed")
            status, body = 503, {"status": "error", "database": f"health check failed: {type(exc).__name__}",
                                 "embedder": "unknown", "documents": None}
        return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store"})


def install_healthz(app: Any, checker: HealthChecker, path: str = "/healthz") -> None:
    """Add `GET path` to Chainlit's FastAPI app ahead of its `/{full_path:path}` catch-all."""
    add_route_first(app, path, checker.endpoint)
