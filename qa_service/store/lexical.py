"""BM25 over the chunk texts (bm25s), derived from the store so it can never disagree with it for long.

The index is rebuilt from the store's chunks when the store changed (a write here, or a different chunk count
from another process); queries never rebuild when nothing changed.
"""

from __future__ import annotations

import logging
import re
import threading

import numpy as np

from qa_service.store.base import ChunkRecord, Hit, Store, Where

log = logging.getLogger(__name__)

_TOKEN = re.compile(r"\w+", re.UNICODE)
STOPWORDS = frozenset(
    """a an and are as at be been but by did do does for from had has have he her his how i if in into is it its
    of on or she so than that the their them then there these they this to was were what when where which who
    whom whose why will with would you your""".split()
)


def _stem(tok: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if tok.endswith(suffix) and len(tok) - len(suffix) >= 3:
            return tok[: -len(suffix)]
    return tok


def tokenize(text: str) -> list[str]:
    return [_stem(t) for t in _TOKEN.findall(text.lower().replace("’", "'")) if t not in STOPWORDS]


class LexicalIndex:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._dirty = True
        self._count = -1
        self._bm25: object | None = None
        self._chunks: list[ChunkRecord] = []

    def mark_dirty(self) -> None:
        self._dirty = True

    def _ensure(self) -> None:
        with self._lock:
            count = self.store.count_chunks()
            if not self._dirty and count == self._count:
                return
            import bm25s

            logging.getLogger("bm25s").setLevel(logging.WARNING)  # bm25s sets DEBUG on its logger at import
            chunks = list(self.store.iter_chunks())
            corpus = [tokenize(c.text) or ["\x00"] for c in chunks]
            bm25 = bm25s.BM25()
            if corpus:
                bm25.index(corpus, show_progress=False)
            self._bm25, self._chunks = bm25, chunks
            self._count, self._dirty = len(chunks), False
            log.info("BM25 index built over %d chunks", len(chunks))

    def query(self, text: str, k: int, where: Where) -> list[Hit]:
        self._ensure()
        tokens = tokenize(text)
        if not tokens or not self._chunks or self._bm25 is None:
            return []
        vocab = getattr(self._bm25, "vocab_dict", {})
        tokens = [t for t in tokens if t in vocab]
        if not tokens:
            return []
        scores = np.asarray(self._bm25.get_scores(tokens), dtype=np.float32)  # type: ignore[attr-defined]
        if not where.empty:
            mask = np.fromiter((where.matches(c) for c in self._chunks), dtype=bool, count=len(self._chunks))
            scores = np.where(mask, scores, 0.0)
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top])]
        return [Hit(self._chunks[i], float(scores[i])) for i in top if scores[i] > 0]
