"""BM25 over the chunk texts (bm25s), derived from the store so it can never disagree with it for long.

The index is rebuilt from the store's chunks when the store changed (a write here, or a different chunk count
from another process); queries never rebuild when nothing changed.
"""

from __future__ import annotations

import logging
import re
import threading
import math
import unicodedata
from collections import Counter

import numpy as np

from qa_service.store.base import ChunkRecord, Hit, Store, Where

log = logging.getLogger(__name__)

_TOKEN = re.compile(r"\w+", re.UNICODE)
STOPWORDS = frozenset(
    """a an and are as at be been but by did do does for from had has have he her his how i if in into is it its
    of on or she so than that the their them then there these they this to was were what when where which who
    whom whose why will with would you your""".split()
)


_stemmers = threading.local()


def _fold(text: str) -> str:
    """Lower-case and strip accents, so a question typed as "Garzon" matches "Garzón"."""
    decomposed = unicodedata.normalize("NFKD", text.lower().replace("’", "'"))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def tokenize(text: str) -> list[str]:
    """Folded, stop-worded, Snowball-stemmed words (PyStemmer; a stemmer object is not thread-safe)."""
    stemmer = getattr(_stemmers, "english", None)
    if stemmer is None:
        import Stemmer

        stemmer = _stemmers.english = Stemmer.Stemmer("english")
    words = [t for t in _TOKEN.findall(_fold(text)) if t not in STOPWORDS and len(t) > 1]
    return list(stemmer.stemWords(words))


class LexicalIndex:
    def __init__(self, store: Store, *, k1: float = 0.9, b: float = 0.4) -> None:
        self.store = store
        self.k1, self.b = k1, b
        self._lock = threading.Lock()
        self._dirty = True
        self._count = -1
        self._bm25: object | None = None
        self._chunks: list[ChunkRecord] = []
        self._df: Counter[str] = Counter()

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
            bm25 = bm25s.BM25(k1=self.k1, b=self.b)
            if corpus:
                bm25.index(corpus, show_progress=False)
            df: Counter[str] = Counter()
            for toks in corpus:
                df.update(set(toks))
            self._bm25, self._chunks, self._df = bm25, chunks, df
            self._count, self._dirty = len(chunks), False
            log.info("BM25 index built over %d chunks", len(chunks))

    def term_weights(self, terms: set[str]) -> dict[str, float]:
        """IDF of each (tokenized) term over the stored chunks; a term no chunk holds gets the largest weight."""
        self._ensure()
        n = len(self._chunks)
        return {t: math.log(1 + n / (1 + self._df.get(t, 0))) for t in terms}

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
