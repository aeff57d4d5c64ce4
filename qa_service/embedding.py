"""Embedder protocol and the sentence-transformers implementation (packaged model, offline)."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import Protocol

import numpy as np

from qa_service.models import resolve_embedder


class Embedder(Protocol):
    dim: int

    def embed(self, texts: list[str]) -> np.ndarray: ...

    def embed_query(self, text: str) -> np.ndarray: ...

    def embed_cached(self, texts: list[str]) -> np.ndarray: ...


class _LRU:
    """A thread-safe least-recently-used map of text -> vector."""

    def __init__(self, size: int) -> None:
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, key: str) -> np.ndarray | None:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: str, value: np.ndarray) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


class SentenceTransformerEmbedder:
    """Normalised embeddings, so cosine similarity is a dot product; query and passage-sentence vectors are LRU-cached."""

    def __init__(self, model: str, *, batch_size: int = 64, device: str = "cpu", cache_size: int = 2048, sentence_cache_size: int = 50_000) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        from sentence_transformers import SentenceTransformer

        self.name = model
        self._model = SentenceTransformer(resolve_embedder(model), device=device)
        self.batch_size = batch_size
        get_dim = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        self.dim = int(get_dim() or 0)
        self._queries = _LRU(cache_size)
        self._sentences = _LRU(sentence_cache_size)
        self._lock = threading.Lock()

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:  # torch is already parallel inside; concurrent encodes only thrash the 2 cores
            out = self._model.encode(
                texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
            )
        return np.asarray(out, dtype=np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        vec = self._queries.get(text)
        if vec is None:
            vec = self.embed([text])[0]
            self._queries.put(text, vec)
        return vec

    def embed_cached(self, texts: list[str]) -> np.ndarray:
        """Passage sentences recur across questions on the same articles; 50k of them are ~75 MB."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        known = {t: v for t in dict.fromkeys(texts) if (v := self._sentences.get(t)) is not None}
        missing = [t for t in dict.fromkeys(texts) if t not in known]
        for t, v in zip(missing, self.embed(missing), strict=True):
            known[t] = v
            self._sentences.put(t, v)
        return np.stack([known[t] for t in texts])
