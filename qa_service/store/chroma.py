"""Chroma behind the Store protocol: embedded PersistentClient, or HttpClient when QA_CHROMA_URL is set.

Embeddings are always computed by the project; Chroma's default embedding function is never used.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlparse

import numpy as np

from qa_service.errors import BackendUnavailable
from qa_service.store.base import UNDATED, ChunkRecord, DocRecord, Hit, Where, log_position, log_token

_DOC_VEC = [1.0]
_UPGRADED = "upgraded"  # journal entry: every chunk carries published_ts
_REBUILDING = "rebuilding"  # journal entry: the chunk index was dropped and is being made again
_GENERATION = "generation"  # journal entry: the change log's head, "<seq>:<epoch>" (base.log_token)
_ENCODER = "encoder"  # journal entry: the identity of the encoder that made the chunk vectors (Embedder.identity)
LOG_KEEP = 1000  # change-log entries kept; a reader further behind than this lists every chunk id instead


def make_client(data_dir: str, chroma_url: str | None) -> Any:
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False, allow_reset=False)
    if chroma_url:
        u = urlparse(chroma_url)
        if u.scheme not in {"http", "https"} or not u.hostname:
            raise ValueError(f"QA_CHROMA_URL must look like http://host:port, got {chroma_url!r}")
        try:
            return chromadb.HttpClient(
                host=u.hostname,
                port=u.port or (443 if u.scheme == "https" else 8000),
                ssl=u.scheme == "https",
                settings=chroma_settings,
            )
        except Exception as exc:
            raise BackendUnavailable(f"cannot reach Chroma at {chroma_url}: {exc}") from None
    return chromadb.PersistentClient(path=data_dir, settings=chroma_settings)


class ChromaStore:
    def __init__(self, client: Any, collection: str, *, write_batch: int = 1000, sync_threshold: int = 1000) -> None:
        self.client = client
        self.name = collection
        self.sync_threshold = sync_threshold
        self._open()
        self.write_batch = min(write_batch, client.get_max_batch_size())

    def _open(self) -> None:
        hnsw = {"space": "cosine", "sync_threshold": self.sync_threshold}
        self.chunks = self.client.get_or_create_collection(self.name, configuration={"hnsw": hnsw}, embedding_function=None)
        self.docs = self.client.get_or_create_collection(
            f"{self.name}__docs", configuration={"hnsw": {"space": "l2"}}, embedding_function=None
        )
        self.journal = self.client.get_or_create_collection(
            f"{self.name}__journal", configuration={"hnsw": {"space": "l2"}}, embedding_function=None
        )

    def reset(self) -> None:
        """Drop every chunk and document of this collection (eval runs start from an empty store)."""
        self.client.delete_collection(self.name)
        self.client.delete_collection(f"{self.name}__docs")
        self.client.delete_collection(f"{self.name}__journal")
        self._open()

    def chunks_readable(self) -> bool:
        from chromadb.errors import InternalError

        if self.journal.get(ids=[_REBUILDING], include=[])["ids"]:
            return False
        try:
            self.chunks.count()
        except InternalError:
            return False
        return True

    def reset_chunks(self) -> None:
        self.journal.upsert(ids=[_REBUILDING], embeddings=[_DOC_VEC], documents=["chunks"])
        self.client.delete_collection(self.name)
        self._open()
        self.journal.upsert(ids=[_GENERATION], embeddings=[_DOC_VEC], documents=[log_token(0, uuid.uuid4().hex)])

    def chunks_rebuilt(self) -> None:
        self.journal.delete(ids=[_REBUILDING])

    def encoder(self) -> str | None:
        got = self.journal.get(ids=[_ENCODER], include=["documents"])
        return str(got["documents"][0]) if got["ids"] else None

    def set_encoder(self, identity: str) -> None:
        self.journal.upsert(ids=[_ENCODER], embeddings=[_DOC_VEC], documents=[identity])

    def drop(self) -> None:
        """Delete this collection's chunks, records and journal for good (unlike reset, nothing is re-created)."""
        for name in (self.name, f"{self.name}__docs", f"{self.name}__journal"):
            try:
                self.client.delete_collection(name)
            except Exception:  # already gone (chromadb raises NotFoundError or ValueError by version)
                pass

    def collections(self) -> list[str]:
        """Every collection of this Chroma (embedded folder or server), by name; their bookkeeping collections left out."""
        names = (getattr(c, "name", c) for c in self.client.list_collections())  # Collection objects, or names in older clients
        return sorted(n for n in names if "__" not in n)

    def upgrade(self, batch: int = 5000) -> int:
        if self.journal.get(ids=[_UPGRADED], include=[])["ids"]:
            return 0
        changed = 0
        offset = 0
        while True:
            got = self.chunks.get(include=["metadatas"], limit=batch, offset=offset)
            if not got["ids"]:
                break
            old = [(cid, dict(meta)) for cid, meta in zip(got["ids"], got["metadatas"], strict=True) if "published_ts" not in meta]
            if old:
                self.chunks.update(ids=[cid for cid, _ in old], metadatas=[meta | {"published_ts": UNDATED} for _, meta in old])
                changed += len(old)
            offset += len(got["ids"])
        self.journal.upsert(ids=[_UPGRADED], embeddings=[_DOC_VEC], documents=["published_ts"])
        return changed

    # chunks
    def upsert_chunks(self, chunks: list[ChunkRecord], embeddings: np.ndarray) -> None:
        for i in range(0, len(chunks), self.write_batch):
            part = chunks[i : i + self.write_batch]
            self.chunks.upsert(
                ids=[c.chunk_id for c in part],
                embeddings=embeddings[i : i + self.write_batch],
                documents=[c.text for c in part],
                metadatas=[c.metadata() for c in part],
            )
        if chunks:
            self._log([c.chunk_id for c in chunks], [])  # after the write: a reader that sees the entry finds the chunks

    def delete_chunks(self, chunk_ids: list[str]) -> None:
        if chunk_ids:
            self._log([], chunk_ids)  # before the delete: a reader may drop a chunk early, never keep a ghost
        for i in range(0, len(chunk_ids), self.write_batch):
            self.chunks.delete(ids=chunk_ids[i : i + self.write_batch])

    # change log: the single writer numbers its chunk writes, so readers' derived indexes (BM25) apply only what is
    # new instead of listing every chunk id (23 s at 1M chunks). A crash between a write and its entry leaves chunks
    # of a pending document, which the next ingest's recovery deletes (and logs).
    def _log(self, added: list[str], removed: list[str]) -> None:
        seq, epoch = log_position(self.generation()) or (0, uuid.uuid4().hex)
        seq += 1
        self.journal.upsert(
            ids=[_log_id(seq), _GENERATION],
            embeddings=[_DOC_VEC, _DOC_VEC],
            documents=[json.dumps({"added": added, "removed": removed}), log_token(seq, epoch)],
        )
        if seq > LOG_KEEP:
            self.journal.delete(ids=[_log_id(seq - LOG_KEEP)])

    def generation(self) -> str:
        """A token that changes with every chunk write, by any process: "<seq>:<epoch>" (base.log_position)."""
        got = self.journal.get(ids=[_GENERATION], include=["documents"])
        return str(got["documents"][0]) if got["ids"] else ""

    def changes(self, since: int, until: int) -> list[tuple[list[str], list[str]]] | None:
        """(added, removed) chunk ids of log entries since+1..until in order; None when some are gone (pruned, or
        the collection was reset), so the caller falls back to a full comparison."""
        want = [_log_id(seq) for seq in range(since + 1, until + 1)]
        got = self.journal.get(ids=want, include=["documents"]) if want else {"ids": [], "documents": []}
        if len(got["ids"]) != len(want):
            return None
        entries = {i: json.loads(d) for i, d in zip(got["ids"], got["documents"], strict=True)}
        return [(list(entries[i]["added"]), list(entries[i]["removed"])) for i in want]

    def chunk_ids(self, batch: int = 20_000) -> list[str]:
        ids: list[str] = []
        while True:
            got = self.chunks.get(include=[], limit=batch, offset=len(ids))
            if not got["ids"]:
                return ids
            ids.extend(got["ids"])

    def chunk_ids_by_doc(self, doc_ids: list[str]) -> dict[str, list[str]]:
        """One query for a whole batch of documents instead of one per document."""
        out: dict[str, list[str]] = {d: [] for d in doc_ids}
        for i in range(0, len(doc_ids), 500):
            part = doc_ids[i : i + 500]
            got = self.chunks.get(where={"doc_id": {"$in": part}}, include=["metadatas"])
            for cid, meta in zip(got["ids"], got["metadatas"], strict=True):
                out.setdefault(str(meta["doc_id"]), []).append(cid)
        return out

    def chunk_ids_of(self, doc_id: str) -> list[str]:
        got = self.chunks.get(where={"doc_id": doc_id}, include=[])
        return list(got["ids"])

    def query(self, embedding: np.ndarray, k: int, where: Where) -> list[tuple[str, float]]:
        """Nearest chunk ids with cosine similarity, best first. Ids only: at 100k chunks the records of 30
        candidates cost 5-6 ms more than the ids, and fusion keeps only a few of them."""
        # no count() first: Chroma returns fewer than k when it holds fewer, and the count cost a round trip per query
        res = self.chunks.query(
            query_embeddings=[np.asarray(embedding, dtype=np.float32)], n_results=k, where=_where(where), include=["distances"]
        )
        return [(str(cid), 1.0 - float(dist)) for cid, dist in zip(res["ids"][0], res["distances"][0], strict=True)]

    def get_chunks(self, chunk_ids: list[str]) -> list[ChunkRecord]:
        if not chunk_ids:
            return []
        got = self.chunks.get(ids=chunk_ids, include=["documents", "metadatas"])
        by_id = {
            cid: ChunkRecord.from_metadata(cid, text, meta)
            for cid, text, meta in zip(got["ids"], got["documents"], got["metadatas"], strict=True)
        }
        return [by_id[c] for c in chunk_ids if c in by_id]

    def get_chunks_with_embeddings(self, chunk_ids: list[str]) -> list[Hit]:
        if not chunk_ids:
            return []
        got = self.chunks.get(ids=chunk_ids, include=["documents", "metadatas", "embeddings"])
        return [
            Hit(ChunkRecord.from_metadata(cid, text, meta), 0.0, np.asarray(emb, dtype=np.float32))
            for cid, text, meta, emb in zip(got["ids"], got["documents"], got["metadatas"], got["embeddings"], strict=True)
        ]

    def iter_chunks(self, batch: int = 5000) -> Iterator[ChunkRecord]:
        offset = 0
        while True:
            got = self.chunks.get(include=["documents", "metadatas"], limit=batch, offset=offset)
            if not got["ids"]:
                return
            for cid, text, meta in zip(got["ids"], got["documents"], got["metadatas"], strict=True):
                yield ChunkRecord.from_metadata(cid, text, meta)
            offset += len(got["ids"])

    def count_chunks(self) -> int:
        return int(self.chunks.count())

    # write journal: the documents a batch is rewriting, so a crash mid-batch can be repaired on the next open
    def mark_pending(self, doc_ids: list[str]) -> None:
        self.journal.upsert(ids=["pending"], embeddings=[_DOC_VEC], documents=[json.dumps(doc_ids)])

    def pending(self) -> list[str]:
        got = self.journal.get(ids=["pending"], include=["documents"])
        return list(json.loads(got["documents"][0])) if got["ids"] else []

    def clear_pending(self) -> None:
        self.journal.delete(ids=["pending"])

    # documents
    def put_documents(self, docs: list[DocRecord]) -> None:
        for i in range(0, len(docs), self.write_batch):
            part = docs[i : i + self.write_batch]
            # the text goes in the metadata, not `documents`: Chroma full-text indexes documents, which nothing here
            # searches (the chunks carry the searchable text); measured, it was about half of this write's time
            self.docs.upsert(ids=[d.doc_id for d in part], embeddings=[_DOC_VEC] * len(part), metadatas=[self._doc_meta(d) for d in part])

    @staticmethod
    def _doc_meta(doc: DocRecord) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "text": doc.text,
            "title": doc.title,
            "content_hash": doc.content_hash,
            "chunk_ids": json.dumps(doc.chunk_ids),
        }
        for key in ("source", "url", "published_at", "author"):
            value = getattr(doc, key)
            if value is not None:
                meta[key] = value
        return meta

    def _doc(self, doc_id: str, text: str | None, meta: dict[str, Any]) -> DocRecord:
        return DocRecord(
            doc_id=doc_id,
            title=str(meta.get("title", "")),
            text=str(meta["text"]) if "text" in meta else text or "",  # older stores hold it in `documents`
            content_hash=str(meta.get("content_hash", "")),
            chunk_ids=json.loads(meta.get("chunk_ids", "[]")),
            source=meta.get("source"),
            url=meta.get("url"),
            published_at=meta.get("published_at"),
            author=meta.get("author"),
        )

    def get_documents(self, doc_ids: list[str]) -> dict[str, DocRecord]:
        if not doc_ids:
            return {}
        got = self.docs.get(ids=doc_ids, include=["documents", "metadatas"])
        return {
            i: self._doc(i, t, m) for i, t, m in zip(got["ids"], got["documents"], got["metadatas"], strict=True)
        }

    def get_document(self, doc_id: str) -> DocRecord | None:
        return self.get_documents([doc_id]).get(doc_id)

    def list_documents(self, offset: int, limit: int) -> tuple[list[DocRecord], int]:
        total = int(self.docs.count())
        got = self.docs.get(include=["documents", "metadatas"], limit=limit, offset=offset)
        docs = [self._doc(i, t, m) for i, t, m in zip(got["ids"], got["documents"], got["metadatas"], strict=True)]
        return docs, total

    def delete_document(self, doc_id: str) -> None:
        self.docs.delete(ids=[doc_id])


def _log_id(seq: int) -> str:
    return f"log:{seq:012d}"


def _where(where: Where) -> dict[str, Any] | None:
    clauses: list[dict[str, Any]] = []
    if where.source is not None:
        clauses.append({"source": where.source})
    if where.doc_id is not None:
        clauses.append({"doc_id": where.doc_id})
    if where.after is not None or where.before is not None:
        clauses.append({"published_ts": {"$gte": where.after or UNDATED + 1}})
    if where.before is not None:
        clauses.append({"published_ts": {"$lte": where.before}})
    if where.as_of is not None:
        clauses.append({"published_ts": {"$lte": where.as_of}})
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}
