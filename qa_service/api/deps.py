"""Everything a route depends on, as typed `Annotated` dependencies read from the app's state."""

from __future__ import annotations

import threading
from typing import Annotated

from fastapi import Depends, Query, Request

from qa_service.api.guards import Slots
from qa_service.collections import Allowed, Collections
from qa_service.config import COLLECTION_NAME, Settings
from qa_service.errors import NotReady
from qa_service.service import QAService
from qa_service.sources import Scheduler


class State:
    """What create_app keeps on app.state.qa: the settings, the service once loaded, and the generation slots."""

    def __init__(self, settings: Settings, generations: Slots) -> None:
        self.settings = settings
        self.generations = generations
        self.service: QAService | None = None
        self.error: str | None = None  # why loading failed
        self.ready = threading.Event()  # set when loading ended, either way
        self.scheduler: Scheduler | None = None  # refreshes due sources
        self.collections: Collections | None = None


def app_state(request: Request) -> State:
    state: State = request.app.state.qa
    return state


# async, as are the guards: each sync dependency costs the request a thread-pool round trip
async def get_service(request: Request) -> QAService:
    state = app_state(request)
    if not state.ready.is_set():
        raise NotReady("models are still loading; retry shortly")
    if state.service is None:
        raise NotReady(f"service failed to start: {state.error}")
    return state.service


async def get_collections(request: Request) -> Collections:
    await get_service(request)
    cols = app_state(request).collections
    assert cols is not None  # made with the service
    return cols


def allowed(request: Request) -> Allowed:
    """The collections the caller's API key may use (set by the guard; None: every one)."""
    scope: Allowed = getattr(request.state, "collections", None)
    return scope


async def get_settings(request: Request) -> Settings:
    return app_state(request).settings


async def get_generations(request: Request) -> Slots:
    return app_state(request).generations


Svc = Annotated[QAService, Depends(get_service)]
Cols = Annotated[Collections, Depends(get_collections)]
CollectionQuery = Annotated[str | None, Query(pattern=COLLECTION_NAME, description="the collection (default: QA_COLLECTION)")]
SettingsDep = Annotated[Settings, Depends(get_settings)]
Generations = Annotated[Slots, Depends(get_generations)]
