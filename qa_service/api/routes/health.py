"""GET /healthz: ready once the models have loaded; 503 while loading or after a failed start."""

from __future__ import annotations

import os
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from qa_service.api.deps import State, app_state
from qa_service.api.errors import error_response

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz(state: Annotated[State, Depends(app_state)]) -> JSONResponse:
    if state.service is not None:
        return JSONResponse({"status": "ok", "ready": True, "worker": os.getpid()})
    if state.ready.is_set():
        return error_response(503, "not_ready", f"service failed to start: {state.error}")
    return error_response(503, "not_ready", "models are loading")
