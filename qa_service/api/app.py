"""create_app(settings): the FastAPI app. Models load in the background; /healthz says when they are ready."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, File, Query, Request, UploadFile
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from sse_starlette.sse import EventSourceResponse

from qa_service.api import errors
from qa_service.api.guards import Slots, make_guard, make_limiter
from qa_service.config import Settings
from qa_service.errors import BadRequest, NotReady, PayloadTooLarge, QAError
from qa_service.ingest.loaders import Loaded, article_from_mapping, load_bytes
from qa_service.schemas import (
    AskRequest,
    AskResponse,
    ChatRequest,
    DocumentDetail,
    DocumentList,
    DocumentsIn,
    ErrorResponse,
    IngestReport,
    SearchRequest,
    SearchResponse,
)
from qa_service.service import QAService, StreamEvent, final_answer

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
# the chat page runs only its own script and style and talks only to this origin
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
            "form-action 'none'; base-uri 'none'; frame-ancestors 'none'")


class State:
    def __init__(self) -> None:
        self.service: QAService | None = None
        self.error: str | None = None
        self.ready = threading.Event()


ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorResponse} for s in (400, 401, 404, 413, 422, 429, 503, 504)
}


async def get_service(request: Request) -> QAService:
    """Async, as are the guards: each sync dependency costs the request a thread-pool round trip."""
    state: State = request.app.state.qa
    if not state.ready.is_set():
        raise NotReady("models are still loading; retry shortly")
    if state.service is None:
        raise NotReady(f"service failed to start: {state.error}")
    return state.service


Svc = Annotated[QAService, Depends(get_service)]


def limit_malloc_arenas(arenas: int = 2) -> None:
    """glibc gives each new thread its own malloc arena; under a 50-user load that alone grew RSS by ~40% (measured)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(-8, arenas)  # M_ARENA_MAX
    except (OSError, AttributeError):
        pass  # not glibc


def create_app(settings: Settings | None = None, *, service: QAService | None = None) -> FastAPI:
    settings = settings or Settings()
    limit_malloc_arenas()
    state = State()

    def load() -> None:
        try:
            state.service = service or QAService(settings)
        except Exception as exc:
            log.exception("model loading failed")
            state.error = str(exc) if isinstance(exc, QAError) else f"{type(exc).__name__}: {exc}"
        finally:
            state.ready.set()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if service is not None:
            state.service = service
            state.ready.set()
        else:
            threading.Thread(target=load, daemon=True, name="qa-load").start()
        yield
        if state.service is not None and service is None:
            state.service.close()

    app = FastAPI(
        title="qa-service",
        version="0.1.0",
        description="Grounded, cited question answering over news articles.",
        lifespan=lifespan,
        responses=ERRORS,
    )
    app.state.qa = state
    errors.install(app)
    limiter = make_limiter(settings)
    read = [Depends(make_guard(settings, "read", limiter))]
    write = [Depends(make_guard(settings, "write", limiter))]
    generations = Slots(settings.max_concurrent_generations, "generations")
    inflight = Slots(settings.max_inflight_requests, "requests")

    @app.middleware("http")
    async def limit_body(request: Request, call_next: Any) -> Any:
        try:
            release = inflight.acquire()
        except QAError as exc:
            return errors.qa_error_response(exc)
        try:
            response = await _limited(request, call_next)
        finally:
            release()
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("X-Frame-Options", "DENY")
        return response

    async def _limited(request: Request, call_next: Any) -> Any:
        # count the bytes as they arrive; Content-Length may lie or be absent
        limit = settings.max_body_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            return errors.error_response(413, "payload_too_large", f"request body over {limit} bytes")
        if request.method in {"POST", "PUT", "PATCH"}:
            body = bytearray()
            async for part in request.stream():
                body.extend(part)
                if len(body) > limit:
                    return errors.error_response(413, "payload_too_large", f"request body over {limit} bytes")
            request._body = bytes(body)  # noqa: SLF001 - starlette caches the body here
        return await call_next(request)

    if settings.cors_origin_list:
        app.add_middleware(
            CORSMiddleware, allow_origins=settings.cors_origin_list, allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Content-Type", "X-API-Key", "Authorization"], max_age=600,
        )

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html", headers={"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")

    @app.get("/healthz", tags=["health"])
    def healthz() -> JSONResponse:
        if state.service is not None:
            return JSONResponse({"status": "ok", "ready": True, "worker": os.getpid()})
        if state.ready.is_set():
            return errors.error_response(503, "not_ready", f"service failed to start: {state.error}")
        return errors.error_response(503, "not_ready", "models are loading")

    @app.post("/v1/search", response_model=SearchResponse, tags=["retrieval"], dependencies=read)
    def search(req: SearchRequest, svc: Svc) -> SearchResponse:
        return SearchResponse(results=svc.search(req.query, req.top_k, req.filters))

    def sse(events: Iterator[StreamEvent], release: Any) -> EventSourceResponse:
        # the first event is computed before the response starts, so validation errors still get a status
        iterator = iter(events)
        try:
            first = next(iterator)
        except StopIteration:
            first = None
        except BaseException:
            release()
            raise

        async def gen() -> AsyncIterator[dict[str, str]]:
            try:
                async for item in _events():
                    yield item
            finally:
                release()

        async def _events() -> AsyncIterator[dict[str, str]]:
            pending = [first] if first is not None else []
            loop = asyncio.get_running_loop()
            sentinel = object()
            while True:
                if pending:
                    ev = pending.pop()
                else:
                    try:
                        ev = await loop.run_in_executor(None, next, iterator, sentinel)  # type: ignore[arg-type]
                    except QAError as exc:
                        yield {"event": "error", "data": json.dumps({"error": {"code": exc.code, "message": exc.message}})}
                        return
                    except Exception:
                        log.exception("stream failed")
                        yield {"event": "error", "data": json.dumps({"error": {"code": "internal_error", "message": "internal error"}})}
                        return
                    if ev is sentinel:
                        return
                assert isinstance(ev, StreamEvent)
                if ev.event == "token":
                    yield {"event": "token", "data": json.dumps({"text": ev.data})}
                else:
                    yield {"event": "done", "data": ev.data.model_dump_json()}

        return EventSourceResponse(gen(), ping=15)

    @app.post("/v1/ask", response_model=AskResponse, tags=["answers"],
              responses={200: {"content": {"text/event-stream": {}}, "description": "JSON, or SSE when stream is true"}}, dependencies=read)
    def ask(req: AskRequest, svc: Svc) -> Any:
        if req.stream:
            return sse(svc.ask_stream(req.question, req.top_k, req.filters), generations.acquire())
        with generations.hold():
            return svc.ask(req.question, req.top_k, req.filters)

    @app.post("/v1/chat", response_model=AskResponse, tags=["answers"],
              responses={200: {"content": {"text/event-stream": {}}, "description": "JSON, or SSE when stream is true"}}, dependencies=read)
    def chat(req: ChatRequest, svc: Svc) -> Any:
        events = svc.chat_stream(req.messages, req.top_k, req.filters)
        if req.stream:
            return sse(events, generations.acquire())
        with generations.hold():
            return final_answer(events)

    @app.post("/v1/documents", response_model=IngestReport, tags=["documents"], dependencies=write)
    def add_documents(req: DocumentsIn, svc: Svc) -> IngestReport:
        if len(req.documents) > settings.max_documents_per_request:
            raise BadRequest(f"at most {settings.max_documents_per_request} documents per request")
        items: list[Loaded] = []
        for i, doc in enumerate(req.documents):
            if len(doc.text) > settings.max_document_chars:
                raise PayloadTooLarge(f"documents[{i}] has {len(doc.text)} characters; the limit is {settings.max_document_chars}")
            if not doc.text.strip():
                raise BadRequest(f"documents[{i}].text is blank")
            items.append(Loaded(f"documents[{i}]", article_from_mapping(doc.model_dump())))
        return svc.ingest(items)

    @app.post("/v1/documents/upload", response_model=IngestReport, tags=["documents"], dependencies=write)
    def upload_documents(svc: Svc, files: Annotated[list[UploadFile], File(description="txt, md, json, jsonl or html files")] = []) -> IngestReport:  # noqa: B006
        """Files are parsed one by one; a bad file becomes a failed item in the report and the rest are still ingested."""
        items: list[Loaded] = []
        for f in files:
            items.extend(load_bytes(f.file.read(), Path(f.filename or "upload.txt").name))
        return svc.ingest(items)

    @app.get("/v1/documents", response_model=DocumentList, tags=["documents"], dependencies=read)
    def list_documents(
        svc: Svc, offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0, limit: Annotated[int, Query(ge=1, le=500)] = 50
    ) -> DocumentList:
        return svc.list_documents(offset, limit)

    @app.get("/v1/documents/{doc_id}", response_model=DocumentDetail, tags=["documents"], dependencies=read)
    def get_document(doc_id: str, svc: Svc) -> DocumentDetail:
        return svc.get_document(doc_id)

    @app.delete("/v1/documents/{doc_id}", status_code=204, tags=["documents"], dependencies=write)
    def delete_document(doc_id: str, svc: Svc) -> None:
        svc.delete(doc_id)

    return app
