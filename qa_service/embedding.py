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


class SentenceTransformerEmbedder:
    """Normalised embeddings, so cosine similarity is a dot product; query vectors are LRU-cached."""

    def __init__(self, model: str, *, batch_size: int = 64, device: str = "cpu", cache_size: int = 2048, sentence_cache_size: int = 50_000) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        from sentence_transformers import SentenceTransformer

        self.name = model
        self._model = SentenceTransformer(resolve_embedder(model), device=device)
        self.batch_size = batch_size
        self.dim = int(self._model.get_embedding_dimension() if hasattr(self._model, "get_embedding_dimension") else self._model.get_sentence_embedding_dimension())
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._sentences: OrderedDict[str, np.ndarray] = OrderedDict()
        self._sentence_cache_size = sentence_cache_size
        self._lock = threading.Lock()
        self._cache_lock = threading.Lock()

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:  # torch is already parallel inside; concurrent encodes only thrash the 2 cores
            out = self._model.encode(
                texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
            )
        return np.asarray(out, dtype=np.float32)

    def embed_query(self, text: str) -> np.ndarray:
        hit = self._cache.get(text)
        if hit is not None:
            self._cache.move_to_end(text)
            return hit
        vec = self.embed([text])[0]
        self._cache[text] = vec
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return vec

    def embed_cached(self, texts: list[str]) -> np.ndarray:
        """Passage sentences recur across questions on the same articles; 50k of them are ~75 MB."""
        with self._cache_lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._sentences))
        if missing:
            vectors = self.embed(missing)
            with self._cache_lock:
                for t, v in zip(missing, vectors, strict=True):
                    self._sentences[t] = v
                while len(self._sentences) > self._sentence_cache_size:
                    self._sentences.popitem(last=False)
        with self._cache_lock:
            out = []
            for t in texts:
                v = self._sentences.get(t)
                if v is None:  # evicted meanwhile by another thread
                    v = self.embed([t])[0]
                else:
                    self._sentences.move_to_end(t)
                out.append(v)
        return np.stack(out) if out else np.zeros((0, self.dim), dtype=np.float32)
