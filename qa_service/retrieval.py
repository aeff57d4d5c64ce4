"""Dense + BM25 retrieval fused by reciprocal rank fusion, with filters and near-duplicate collapsing."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from qa_service.config import Settings
from qa_service.embedding import Embedder
from qa_service.schemas import Filters
from qa_service.store.base import ChunkRecord, Where, date_key
from qa_service.store.chroma import ChromaStore
from qa_service.store.lexical import LexicalIndex


@dataclass
class Retrieved:
    chunk: ChunkRecord
    score: float
    similarity: float
    embedding: np.ndarray


def where_from(filters: Filters | None) -> Where:
    if filters is None:
        return Where()
    after = date_key(filters.published_after.isoformat()) if filters.published_after else None
    before = date_key(filters.published_before.isoformat()) if filters.published_before else None
    return Where(source=filters.source, doc_id=filters.doc_id, after=after, before=before)


def _text_key(text: str) -> str:
    return hashlib.sha1(" ".join(text.lower().split()).encode()).hexdigest()


class Retriever:
    def __init__(self, store: ChromaStore, embedder: Embedder, lexical: LexicalIndex, settings: Settings) -> None:
        self.store = store
        self.embedder = embedder
        self.lexical = lexical
        self.settings = settings

    def search(self, query: str, k: int, where: Where, *, hybrid: bool | None = None) -> list[Retrieved]:
        s = self.settings
        use_hybrid = s.hybrid if hybrid is None else hybrid
        q = self.embedder.embed_query(query)
        n_cand = max(s.candidates, k * 3)
        dense = self.store.query(q, n_cand, where)
        fused: dict[str, float] = {}
        chunks: dict[str, ChunkRecord] = {}
        embs: dict[str, np.ndarray] = {}
        for rank, h in enumerate(dense):
            fused[h.chunk.chunk_id] = s.dense_weight / (s.rrf_k + rank + 1) if use_hybrid else h.score
            chunks[h.chunk.chunk_id] = h.chunk
            if h.embedding is not None:
                embs[h.chunk.chunk_id] = h.embedding
        if use_hybrid:
            for rank, (cid, _) in enumerate(self.lexical.query_ids(query, n_cand, where)):
                fused[cid] = fused.get(cid, 0.0) + s.lexical_weight / (s.rrf_k + rank + 1)
        order = sorted(fused, key=lambda c: -fused[c])
        missing = [c for c in order[: k * 3] if c not in embs]  # lexical-only hits: one round trip for both
        for hit in self.store.get_chunks_with_embeddings(missing):
            chunks[hit.chunk.chunk_id] = hit.chunk
            if hit.embedding is not None:
                embs[hit.chunk.chunk_id] = hit.embedding
        out: list[Retrieved] = []
        seen_text: set[str] = set()
        for cid in order:
            if len(out) >= k:
                break
            emb = embs.get(cid)
            if emb is None:
                continue
            key = _text_key(chunks[cid].text)
            if key in seen_text or any(float(emb @ r.embedding) >= s.dedup_threshold for r in out):
                continue
            seen_text.add(key)
            out.append(Retrieved(chunks[cid], fused[cid], float(emb @ q), emb))
        return out
