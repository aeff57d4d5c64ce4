"""/v1/collections: list (reads), create and delete (writes). A key limited to some collections sees and touches
only those."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request

from qa_service.api.deps import Cols, allowed
from qa_service.collections import Collections
from qa_service.config import COLLECTION_NAME
from qa_service.schemas import CollectionIn, CollectionInfo, CollectionList

reads = APIRouter(tags=["collections"])
writes = APIRouter(tags=["collections"])


def _info(cols: Collections, name: str) -> CollectionInfo:
    documents, chunks = cols.count(name)
    return CollectionInfo(name=name, documents=documents, chunks=chunks, default=name == cols.default_name)


@reads.get("/v1/collections", response_model=CollectionList)
def list_collections(cols: Cols, request: Request) -> CollectionList:
    return CollectionList(collections=[_info(cols, n) for n in cols.names(allowed(request))])


@writes.post("/v1/collections", status_code=201, response_model=CollectionInfo)
def create_collection(req: CollectionIn, cols: Cols, request: Request) -> CollectionInfo:
    """201 with the new, empty collection; 409 when it exists, 403 when the key may not use that name."""
    cols.create(req.name, allowed(request))
    return _info(cols, req.name)


@writes.delete("/v1/collections/{name}", status_code=204)
def delete_collection(name: Annotated[str, Path(pattern=COLLECTION_NAME)], cols: Cols, request: Request) -> None:
    """Deletes the collection with its documents, index and sources; the server's QA_COLLECTION is refused (409)."""
    cols.delete(name, allowed(request))
