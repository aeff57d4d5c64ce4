"""POST /v1/ask and /v1/chat: a cited answer as JSON, or streamed as Server-Sent Events when `stream` is true.

Each holds one generation slot for as long as it generates, so a burst is told to retry instead of queueing.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from qa_service.api.deps import Cols, Generations, allowed
from qa_service.api.sse import sse_response
from qa_service.schemas import AskRequest, AskResponse, ChatRequest
from qa_service.service import final_answer

router = APIRouter(tags=["answers"])
STREAMED: dict[int | str, dict[str, Any]] = {200: {"content": {"text/event-stream": {}}, "description": "JSON, or SSE when stream is true"}}


@router.post("/v1/ask", response_model=AskResponse, responses=STREAMED)
def ask(req: AskRequest, cols: Cols, generations: Generations, request: Request) -> Any:
    svc = cols.get(req.collection, allowed(request))
    if req.stream:
        return sse_response(svc.ask_stream(req.question, req.top_k, req.filters, mode=req.mode, as_of=req.as_of), generations.acquire())
    with generations.hold():
        return svc.ask(req.question, req.top_k, req.filters, mode=req.mode, as_of=req.as_of)


@router.post("/v1/chat", response_model=AskResponse, responses=STREAMED)
def chat(req: ChatRequest, cols: Cols, generations: Generations, request: Request) -> Any:
    svc = cols.get(req.collection, allowed(request))
    events = svc.chat_stream(req.messages, req.top_k, req.filters, mode=req.mode, as_of=req.as_of)
    if req.stream:
        return sse_response(events, generations.acquire())
    with generations.hold():
        return final_answer(events)
