"""/v1/sources: the feeds, sitemaps and pages the service follows. Listing reads; adding, refreshing and removing write."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from qa_service.api.deps import CollectionQuery, Cols, allowed
from qa_service.schemas import Source, SourceAdded, SourceIn, SourceList, SourceRefresh
from qa_service.sources import Sources

reads = APIRouter(tags=["sources"])
writes = APIRouter(tags=["sources"])


@writes.post("/v1/sources", status_code=201, response_model=SourceAdded)
def add_source(req: SourceIn, cols: Cols, request: Request) -> SourceAdded:
    """Follow a URL and fetch it once. A URL on a private address, or not http(s), is a 422 (`url_not_allowed`); a first
    fetch that fails still registers the source, with the reason in `last_status`, to be retried on schedule."""
    done = cols.get(req.collection, allowed(request)).sources.add(req)
    return SourceAdded(**done.source.model_dump(), report=done.report, notes=done.notes)


@reads.get("/v1/sources", response_model=SourceList)
def list_sources(cols: Cols, request: Request, collection: CollectionQuery = None) -> SourceList:
    return SourceList(sources=_sources(cols, request, collection).all())


@reads.get("/v1/sources/{source_id}", response_model=Source)
def get_source(source_id: str, cols: Cols, request: Request, collection: CollectionQuery = None) -> Source:
    return _sources(cols, request, collection).get(source_id)


@writes.post("/v1/sources/{source_id}/refresh", response_model=SourceRefresh)
def refresh_source(source_id: str, cols: Cols, request: Request, collection: CollectionQuery = None) -> SourceRefresh:
    """Fetch now: the ingest report of this fetch (added, updated, unchanged, failed, with each item's error)."""
    return _sources(cols, request, collection).refresh(source_id)


@writes.delete("/v1/sources/{source_id}", status_code=204)
def remove_source(
    source_id: str,
    cols: Cols,
    request: Request,
    collection: CollectionQuery = None,
    delete_documents: Annotated[bool, Query(description="also delete the documents only this source brought in")] = False,
) -> None:
    _sources(cols, request, collection).remove(source_id, delete_documents=delete_documents)


def _sources(cols: Cols, request: Request, collection: str | None) -> Sources:
    return cols.get(collection, allowed(request)).sources
