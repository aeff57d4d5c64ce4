"""POST /v1/search: the ranked chunks for a query, no LLM."""

from __future__ import annotations

from fastapi import APIRouter, Request

from qa_service.api.deps import Cols, allowed
from qa_service.schemas import SearchRequest, SearchResponse

router = APIRouter(tags=["retrieval"])


@router.post("/v1/search", response_model=SearchResponse)
def search(req: SearchRequest, cols: Cols, request: Request) -> SearchResponse:
    svc = cols.get(req.collection, allowed(request))
    return SearchResponse(results=svc.search(req.query, req.top_k, req.filters, rerank=req.rerank, as_of=req.as_of))
