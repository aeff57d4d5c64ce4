"""/v1/documents: add (JSON or file upload), list, show and delete. `reads` and `writes` get different guards.
Each works on one collection: `collection` in the JSON body, or `?collection=` (default: QA_COLLECTION)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, Query, Request, UploadFile

from qa_service.api.deps import CollectionQuery, Cols, SettingsDep, allowed
from qa_service.errors import BadRequest, PayloadTooLarge
from qa_service.ingest.loaders import Loaded, article_from_mapping, load_bytes
from qa_service.schemas import DocumentDetail, DocumentList, DocumentsIn, IngestReport

reads = APIRouter(tags=["documents"])
writes = APIRouter(tags=["documents"])


@writes.post("/v1/documents", response_model=IngestReport)
def add_documents(req: DocumentsIn, cols: Cols, settings: SettingsDep, request: Request) -> IngestReport:
    svc = cols.get(req.collection, allowed(request))
    if len(req.documents) > settings.max_documents_per_request:
        raise BadRequest(f"at most {settings.max_documents_per_request} documents per request")
    items: list[Loaded] = []
    for i, doc in enumerate(req.documents):
        if len(doc.text) > settings.max_document_chars:
            raise PayloadTooLarge(f"documents[{i}] has {len(doc.text)} characters; the limit is {settings.max_document_chars}")
        if not doc.text.strip():
            raise BadRequest(f"documents[{i}].text is blank")
        items.append(Loaded(f"documents[{i}]", article_from_mapping(doc.model_dump(exclude={"collection"}))))
    return svc.ingest(items)


@writes.post("/v1/documents/upload", response_model=IngestReport)
def upload_documents(
    cols: Cols,
    request: Request,
    files: Annotated[list[UploadFile], File(description="txt, md, json, jsonl or html files")] = [],  # noqa: B006
    collection: CollectionQuery = None,
) -> IngestReport:
    """Files are parsed one by one; a bad file becomes a failed item in the report and the rest are still ingested."""
    svc = cols.get(collection, allowed(request))
    items: list[Loaded] = []
    for f in files:
        items.extend(load_bytes(f.file.read(), Path(f.filename or "upload.txt").name))
    return svc.ingest(items)


@reads.get("/v1/documents", response_model=DocumentList)
def list_documents(
    cols: Cols,
    request: Request,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    collection: CollectionQuery = None,
) -> DocumentList:
    return cols.get(collection, allowed(request)).list_documents(offset, limit)


@reads.get("/v1/documents/{doc_id}", response_model=DocumentDetail)
def get_document(doc_id: str, cols: Cols, request: Request, collection: CollectionQuery = None) -> DocumentDetail:
    return cols.get(collection, allowed(request)).get_document(doc_id)


@writes.delete("/v1/documents/{doc_id}", status_code=204)
def delete_document(doc_id: str, cols: Cols, request: Request, collection: CollectionQuery = None) -> None:
    cols.get(collection, allowed(request)).delete(doc_id)
