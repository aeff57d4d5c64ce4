"""GET /metrics: Prometheus text format. Mounted by create_app unless QA_METRICS=off, behind a key when keyed."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from qa_service.api.deps import app_state
from qa_service.metrics import StoreCollector, exposition

router = APIRouter(tags=["operations"])


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"}})
async def metrics(request: Request) -> Response:
    state = app_state(request)
    collector = StoreCollector(lambda: state.collections.counts() if state.collections else None, state.settings, request.app.version)
    return Response(exposition(collector), media_type=CONTENT_TYPE_LATEST)
