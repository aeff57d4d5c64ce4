"""Request and response models shared by the API, the CLI and the eval runner."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr

from qa_service.config import COLLECTION_NAME, MAX_QUESTION_CHARS, MAX_TOP_K


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


NOT_BLANK = r"[^\s\x1c-\x1f]"  # str.strip() also strips the information separators U+001C-U+001F


def _text_only(message: str) -> BeforeValidator:
    """Reject anything but a string before pydantic reads a number as a Unix timestamp: the schema says a string."""

    def check(v: object) -> object:
        if v is not None and not isinstance(v, (str, dt.date)):
            raise ValueError(message)
        return v

    return BeforeValidator(check)


IsoDate = Annotated[dt.date | None, _text_only("expected an ISO date string (YYYY-MM-DD)")]


def _collection() -> Any:
    return Field(None, pattern=COLLECTION_NAME, description="the collection to use (default: the server's QA_COLLECTION)", examples=["news"])


class Filters(Strict):
    source: str | None = Field(None, max_length=200)
    doc_id: str | None = Field(None, max_length=200)
    published_after: IsoDate = Field(None, description="ISO date (YYYY-MM-DD), inclusive")
    published_before: IsoDate = Field(None, description="ISO date (YYYY-MM-DD), inclusive")


class AsOfField(Strict):
    as_of: Annotated[dt.datetime | dt.date | None, _text_only("expected an ISO date or datetime string")] = Field(
        None,
        description="the moment the question is asked (ISO date or datetime; default now): articles published later are "
        "hidden, and 'this week', 'on Monday', 'in February' count back from it",
        examples=["2023-01-05"],
    )


class SearchRequest(AsOfField):
    collection: str | None = _collection()
    query: str = Field(..., min_length=1, max_length=MAX_QUESTION_CHARS, pattern=NOT_BLANK)
    top_k: int | None = Field(None, ge=1, le=MAX_TOP_K)
    filters: Filters | None = None
    rerank: bool = Field(False, strict=True, description="reorder the candidates with the trained reader (slower: it reads each one)")


class SearchResult(BaseModel):
    chunk_id: str
    doc_id: str
    title: str
    source: str | None
    url: str | None
    published_at: str | None
    text: str
    score: float
    start: int
    end: int


class SearchResponse(BaseModel):
    results: list[SearchResult]


Mode = Literal["generative", "extractive"]


class AskRequest(AsOfField):
    collection: str | None = _collection()
    question: str = Field(..., min_length=1, max_length=MAX_QUESTION_CHARS, pattern=NOT_BLANK)
    top_k: int | None = Field(None, ge=1, le=MAX_TOP_K)
    filters: Filters | None = None
    stream: bool = Field(False, strict=True)
    mode: Mode | None = Field(None, description="generative (the LLM writes from the reader's evidence) or extractive (the reader's span alone); default QA_ANSWER_MODE")


class ChatMessage(Strict):
    role: Literal["user", "assistant", "system"]
    content: str = Field(..., min_length=1, max_length=20_000, pattern=NOT_BLANK)


class ChatRequest(AsOfField):
    collection: str | None = _collection()
    messages: list[ChatMessage] = Field(..., min_length=1, max_length=50)
    top_k: int | None = Field(None, ge=1, le=MAX_TOP_K)
    filters: Filters | None = None
    stream: bool = Field(False, strict=True)
    mode: Mode | None = None


class Quote(BaseModel):
    text: str
    start: int
    end: int


class Citation(BaseModel):
    n: int
    doc_id: str
    chunk_id: str
    title: str
    source: str | None
    url: str | None
    published_at: str | None
    text: str
    quote: Quote | None


class Timings(BaseModel):
    retrieve_ms: float
    generate_ms: float
    total_ms: float
    first_token_ms: float | None = None


class AnswerSpan(BaseModel):
    """Where the short answer stands: offsets in the document's text."""

    doc_id: str
    chunk_id: str
    start: int
    end: int
    text: str


class AskResponse(BaseModel):
    answer: str
    short_answer: str | None
    refused: bool
    citations: list[Citation]
    timings: Timings
    mode: Mode = "generative"
    confidence: float | None = Field(None, description="calibrated probability that the short answer is right (0-1); none when refused")
    span: AnswerSpan | None = Field(None, description="where the short answer stands in a cited document (offsets in its text), when it stands there verbatim")
    question: str | None = Field(None, description="the standalone question that was answered (chat)")
    # what the confidence was computed from (compose.Signals): not part of the API; the eval records it, and the
    # answer calibration is refitted from those rows
    _signals: Any = PrivateAttr(None)
    # the passages the answer was read from (the LLM's evidence, or the reader's span in its chunk): not part of the
    # API; the eval scores whether the gold answer was in front of the model at all
    _evidence: list[str] = PrivateAttr(default_factory=list)


class DocumentIn(Strict):
    id: str | None = Field(None, min_length=1, max_length=200, pattern=r"^[^\x00-\x1f]+$")
    title: str | None = Field(None, max_length=1000)
    text: str = Field(..., min_length=1, pattern=NOT_BLANK)
    source: str | None = Field(None, max_length=200)
    url: str | None = Field(None, max_length=2000)
    published_at: str | None = Field(None, max_length=40)
    author: str | None = Field(None, max_length=300)


class DocumentsIn(Strict):
    collection: str | None = _collection()
    documents: list[DocumentIn] = Field(..., min_length=1)


class IngestItem(BaseModel):
    origin: str
    doc_id: str | None
    status: Literal["added", "updated", "unchanged", "failed"]
    chunks: int = 0
    error: str | None = None


class IngestReport(BaseModel):
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: int = 0
    chunks_written: int = 0
    items: list[IngestItem] = []


SourceKind = Literal["feed", "sitemap", "page"]


class SourceIn(Strict):
    collection: str | None = _collection()
    url: str = Field(..., min_length=1, max_length=2000, pattern=r"^\S+$", description="an http(s) URL of a feed, a sitemap or a page", examples=["https://example.org/news/rss.xml"])
    refresh_minutes: int = Field(60, ge=0, le=60 * 24 * 30, description="minutes between refreshes; 0: only when asked")
    kind: SourceKind | None = Field(None, description="detected from the first response when left out")


class Source(BaseModel):
    id: str
    url: str
    kind: SourceKind | None
    refresh_minutes: int
    created_at: str
    last_fetched_at: str | None
    last_status: str | None = Field(None, description="'ok', 'not modified', or why the last refresh failed")
    failures: int = Field(0, description="refreshes failed in a row; each doubles the wait before the next")
    next_refresh_at: str | None
    documents: int = Field(0, description="documents this source has brought in")


class SourceList(BaseModel):
    sources: list[Source]


class SourceAdded(Source):
    """The new source as it stands after its first fetch, with that fetch's ingest report."""

    report: IngestReport
    notes: list[str] = []


class SourceRefresh(BaseModel):
    source: Source
    report: IngestReport
    notes: list[str] = Field([], description="what the refresh left out and why (items over QA_FETCH_MAX_ITEMS, robots.txt)")


class CollectionIn(Strict):
    name: str = Field(..., pattern=COLLECTION_NAME, description="3-63 letters, digits, '.', '_' or '-', starting and ending with a letter or digit")


class CollectionInfo(BaseModel):
    name: str
    documents: int
    chunks: int
    default: bool = Field(description="the server's QA_COLLECTION: requests that name none use it")


class CollectionList(BaseModel):
    collections: list[CollectionInfo]


class DocumentInfo(BaseModel):
    doc_id: str
    title: str
    source: str | None
    url: str | None
    published_at: str | None
    author: str | None
    chunks: int
    content_hash: str
    chars: int


class DocumentDetail(DocumentInfo):
    text: str


class DocumentList(BaseModel):
    documents: list[DocumentInfo]
    total: int
    offset: int
    limit: int


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody
