"""The store protocol: chunks with embeddings plus one record per document (kept in the same backend)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


@dataclass
class ChunkRecord:
    chunk_id: str
    doc_id: str
    text: str
    index: int
    start: int
    end: int
    title: str
    source: str | None = None
    url: str | None = None
    published_at: str | None = None
    content_hash: str = ""

    def metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "doc_id": self.doc_id,
            "title": self.title,
            "chunk_index": self.index,
            "start": self.start,
            "end": self.end,
            "content_hash": self.content_hash,
        }
        for key in ("source", "url", "published_at"):
            value = getattr(self, key)
            if value is not None:
                meta[key] = value
        ts = date_key(self.published_at)
        if ts is not None:
            meta["published_ts"] = ts
        return meta

    @classmethod
    def from_metadata(cls, chunk_id: str, text: str, meta: dict[str, Any]) -> ChunkRecord:
        return cls(
            chunk_id=chunk_id,
            doc_id=str(meta["doc_id"]),
            text=text,
            index=int(meta.get("chunk_index", 0)),
            start=int(meta.get("start", 0)),
            end=int(meta.get("end", len(text))),
            title=str(meta.get("title", "")),
            source=meta.get("source"),
            url=meta.get("url"),
            published_at=meta.get("published_at"),
            content_hash=str(meta.get("content_hash", "")),
        )


@dataclass
class DocRecord:
    doc_id: str
    title: str
    text: str
    content_hash: str
    chunk_ids: list[str]
    source: str | None = None
    url: str | None = None
    published_at: str | None = None
    author: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Hit:
    chunk: ChunkRecord
    score: float
    embedding: np.ndarray | None = None


@dataclass(frozen=True)
class Where:
    source: str | None = None
    doc_id: str | None = None
    after: int | None = None
    before: int | None = None

    def matches(self, chunk: ChunkRecord) -> bool:
        if self.source is not None and chunk.source != self.source:
            return False
        if self.doc_id is not None and chunk.doc_id != self.doc_id:
            return False
        if self.after is not None or self.before is not None:
            ts = date_key(chunk.published_at)
            if ts is None:
                return False
            if self.after is not None and ts < self.after:
                return False
            if self.before is not None and ts > self.before:
                return False
        return True

    @property
    def empty(self) -> bool:
        return self == Where()


def log_position(generation: str | None) -> tuple[int, str] | None:
    """The change-log entry a generation token ("<seq>:<epoch>") names; None for older tokens. The epoch is new
    whenever the log starts over (a reset collection), so a number is only compared within one log."""
    head, sep, epoch = (generation or "").partition(":")
    return (int(head), epoch) if sep and head.isdigit() and epoch else None


def date_key(value: str | None) -> int | None:
    """An ISO date or datetime as YYYYMMDD, so Chroma can filter on it numerically."""
    if not value:
        return None
    try:
        d = dt.date.fromisoformat(value[:10])
    except ValueError:
        try:
            d = dt.datetime.fromisoformat(value).date()
        except ValueError:
            return None
    return d.year * 10000 + d.month * 100 + d.day


class Store(Protocol):
    def upsert_chunks(self, chunks: list[ChunkRecord], embeddings: np.ndarray) -> None: ...

    def delete_chunks(self, chunk_ids: list[str]) -> None: ...

    def query(self, embedding: np.ndarray, k: int, where: Where) -> list[tuple[str, float]]: ...

    def get_chunks(self, chunk_ids: list[str]) -> list[ChunkRecord]: ...

    def get_chunks_with_embeddings(self, chunk_ids: list[str]) -> list[Hit]: ...

    def iter_chunks(self, batch: int = 5000) -> Iterator[ChunkRecord]: ...

    def count_chunks(self) -> int: ...

    def chunk_ids(self, batch: int = 20_000) -> list[str]: ...

    def generation(self) -> str: ...

    def changes(self, since: int, until: int) -> list[tuple[list[str], list[str]]] | None: ...

    def put_document(self, doc: DocRecord) -> None: ...

    def put_documents(self, docs: list[DocRecord]) -> None: ...

    def chunk_ids_by_doc(self, doc_ids: list[str]) -> dict[str, list[str]]: ...

    def get_document(self, doc_id: str) -> DocRecord | None: ...

    def get_documents(self, doc_ids: list[str]) -> dict[str, DocRecord]: ...

    def list_documents(self, offset: int, limit: int) -> tuple[list[DocRecord], int]: ...

    def delete_document(self, doc_id: str) -> None: ...

    def chunk_ids_of(self, doc_id: str) -> list[str]: ...

    def mark_pending(self, doc_ids: list[str]) -> None: ...

    def pending(self) -> list[str]: ...

    def clear_pending(self) -> None: ...
