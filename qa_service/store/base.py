"""The store protocol: chunks with embeddings plus one record per document (kept in the same backend)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
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
        meta["published_ts"] = date_key(self.published_at) or UNDATED
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


@dataclass
class Hit:
    chunk: ChunkRecord
    score: float
    embedding: np.ndarray | None = None


UNDATED = 0  # published_ts of an undated chunk: a question's as_of filter keeps it (see Where.as_of)


@dataclass(frozen=True)
class Where:
    """Which chunks a query may see. Dates are YYYYMMDD keys (date_key). `after`/`before` are the user's published
    range and leave undated chunks out; `as_of` hides chunks published later than the moment a question is asked
    and keeps undated ones."""

    source: str | None = None
    doc_id: str | None = None
    after: int | None = None
    before: int | None = None
    as_of: int | None = None

    @property
    def empty(self) -> bool:
        return self == Where()


def log_token(seq: int, epoch: str) -> str:
    """The generation token of change-log entry `seq` of the log `epoch`: what log_position reads back."""
    return f"{seq}:{epoch}"


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


def utc_stamp(ts: float) -> str:
    """A Unix time in the one form the service writes its timestamps: 2026-12-06T03:58:11Z (UTC, to the second)."""
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def key_date(key: int | None) -> dt.date | None:
    """date_key's inverse: a YYYYMMDD key back to a date (None for undated or malformed)."""
    if not key or key < 0:
        return None
    try:
        return dt.date(key // 10000, key // 100 % 100, key % 100)
    except ValueError:
        return None


class ChunkStore(Protocol):
    """Chunks with their embeddings and metadata: what retrieval searches."""

    def upsert_chunks(self, chunks: list[ChunkRecord], embeddings: np.ndarray) -> None:
        """Write chunks by id (an existing id is replaced), then log the write in the change log."""

    def delete_chunks(self, chunk_ids: list[str]) -> None:
        """Log the removal, then delete: a reader may drop a chunk early, never keep a ghost. Unknown ids are ignored."""

    def query(self, embedding: np.ndarray, k: int, where: Where) -> list[tuple[str, float]]:
        """The k nearest chunk ids that match `where`, with cosine similarity, best first (fewer when fewer exist)."""

    def get_chunks(self, chunk_ids: list[str]) -> list[ChunkRecord]:
        """Records in the order asked; missing ids are left out."""

    def get_chunks_with_embeddings(self, chunk_ids: list[str]) -> list[Hit]:
        """Records with their stored vectors (score 0), in any order; missing ids are left out."""

    def iter_chunks(self, batch: int = 5000) -> Iterator[ChunkRecord]:
        """Every chunk, read in pages of `batch`."""

    def count_chunks(self) -> int: ...

    def chunk_ids(self, batch: int = 20_000) -> list[str]:
        """Every chunk id, read in pages of `batch`."""

    def chunk_ids_by_doc(self, doc_ids: list[str]) -> dict[str, list[str]]:
        """Chunk ids per document, every asked document present (an empty list when it has none)."""

    def chunk_ids_of(self, doc_id: str) -> list[str]: ...


class DocumentStore(Protocol):
    """One record per document: its full text (quotes are located in it) and the ids of its chunks."""

    def put_documents(self, docs: list[DocRecord]) -> None:
        """Write records by doc_id; an existing record is replaced."""

    def get_documents(self, doc_ids: list[str]) -> dict[str, DocRecord]:
        """Records by id; missing ids are left out."""

    def get_document(self, doc_id: str) -> DocRecord | None: ...

    def list_documents(self, offset: int, limit: int) -> tuple[list[DocRecord], int]:
        """A page of records in a stable order, and the total count."""

    def delete_document(self, doc_id: str) -> None:
        """Remove the record (its chunks are the caller's to delete); an unknown id is ignored."""


class ChangeLog(Protocol):
    """Numbered chunk writes, so derived indexes (BM25) in any process apply only what is new."""

    def generation(self) -> str:
        """A token that changes with every chunk write: "<seq>:<epoch>" (see log_position); "" for a new store."""

    def changes(self, since: int, until: int) -> list[tuple[list[str], list[str]]] | None:
        """(added, removed) chunk ids of entries since+1..until in order; None when some are gone (pruned or reset)."""


class Journal(Protocol):
    """The documents a batch is rewriting, so a crash in the middle is repaired on the next open."""

    def mark_pending(self, doc_ids: list[str]) -> None:
        """Replace the pending set."""

    def pending(self) -> list[str]:
        """The pending set, empty when the last batch finished."""

    def clear_pending(self) -> None: ...


class Store(ChunkStore, DocumentStore, ChangeLog, Journal, Protocol):
    """Everything the service keeps, in one backend so a write and its bookkeeping go to the same place."""

    def reset(self) -> None:
        """Drop every chunk, document, log entry and journal entry of this collection (evaluation starts empty)."""

    def chunks_readable(self) -> bool:
        """Whether the chunk index answers reads. An embedded Chroma killed in the middle of a write can leave a log
        its compactor cannot apply, after which every read of that collection fails (chroma-core/chroma#7678); the
        records, which hold each document's whole text, stay readable, so the chunks can be made again from them."""

    def reset_chunks(self) -> None:
        """Drop the chunk index and start an empty one, keeping the records and the journal; readers' derived
        indexes see a new log epoch and compare every id. Until `chunks_rebuilt`, `chunks_readable` stays False, so
        a rebuild cut short starts again on the next open."""

    def chunks_rebuilt(self) -> None:
        """Every record's chunks are back after `reset_chunks`."""

    def encoder(self) -> str | None:
        """The identity of the encoder that made the chunk vectors (`Embedder.identity`); None until one is recorded
        (a new store, or one written before stores recorded it). `reset` forgets it; `reset_chunks` keeps it."""

    def set_encoder(self, identity: str) -> None:
        """Record the encoder that made, or from now on makes, the chunk vectors."""

    def drop(self) -> None:
        """Delete this collection with everything it holds, for good: nothing is re-created."""

    def collections(self) -> list[str]:
        """The names of every collection this backend holds (this one among them)."""

    def upgrade(self) -> int:
        """Bring records written by an older version up to this one's metadata (today: undated chunks get
        published_ts = UNDATED, which the as_of filter needs); idempotent, run under the writer lock. Returns how
        many records changed."""
