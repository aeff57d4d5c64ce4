"""BM25 over the chunk texts: incremental, persistent, and kept in step with the store by any process.

The store's generation token changes with every chunk write. When it differs from the one this index last saw,
the index reads the store's change log from its own position on and tokenizes only the chunks that are new;
removed ones become tombstones until the next compaction. When the log cannot say (an index file from another
epoch, a reader too far behind, a count that disagrees after a load), it compares all chunk ids instead. Postings are numpy arrays per
term plus a small append buffer, so nothing is rebuilt per query. The index is saved next to the store and
loaded on start; a stale file only costs a diff, never a wrong answer.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from array import array
from collections import Counter
from pathlib import Path

import numpy as np

from qa_service.store.base import ChunkRecord, Hit, Store, Where, date_key, log_position
from qa_service.text import tokenize

log = logging.getLogger(__name__)

FORMAT = 1
SAVE_FRACTION = 0.2  # save when this share of the index changed since the last save


class _Codes:
    """Small ints for repeated strings (doc ids, sources), so filters are one vectorised comparison."""

    def __init__(self, values: list[str] | None = None) -> None:
        self.values: list[str] = list(values or [])
        self.index = {v: i for i, v in enumerate(self.values)}

    def code(self, value: str | None) -> int:
        if value is None:
            return -1
        if value not in self.index:
            self.index[value] = len(self.values)
            self.values.append(value)
        return self.index[value]


class LexicalIndex:
    def __init__(self, store: Store, *, k1: float = 0.9, b: float = 0.4, path: Path | None = None, compact_ratio: float = 0.3) -> None:
        self.store = store
        self.k1, self.b = k1, b
        self.path = path
        self.compact_ratio = compact_ratio
        self._lock = threading.RLock()
        self._generation: str | None = None
        self._verified = False  # the first sync diffs ids even when a loaded file's generation matches
        self._unsaved = 0
        self._reset()
        if path is not None:
            self._load(path)

    # state
    def _reset(self) -> None:
        self._ids: list[str] = []  # slot -> chunk id ("" once removed)
        self._slot: dict[str, int] = {}
        self._alive = np.zeros(0, dtype=bool)
        self._length = np.zeros(0, dtype=np.float32)
        self._doc = np.zeros(0, dtype=np.int32)
        self._source = np.zeros(0, dtype=np.int32)
        self._date = np.zeros(0, dtype=np.int32)
        self._doc_codes, self._source_codes = _Codes(), _Codes()
        self._main: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._buffer: dict[str, tuple[array[int], array[float]]] = {}
        self._live = 0
        self._total_length = 0.0

    def __len__(self) -> int:
        return self._live

    def _grow(self, n: int) -> None:
        need = len(self._ids) + n
        if need <= len(self._alive):
            return
        cap = max(need, int(len(self._alive) * 1.5) + 1024)
        for name in ("_alive", "_length", "_doc", "_source", "_date"):
            old = getattr(self, name)
            new = np.zeros(cap, dtype=old.dtype)
            new[: len(old)] = old
            setattr(self, name, new)

    def _add(self, chunk: ChunkRecord) -> None:
        tokens = tokenize(chunk.text)
        slot = len(self._ids)
        self._ids.append(chunk.chunk_id)
        self._slot[chunk.chunk_id] = slot
        self._alive[slot] = True
        self._length[slot] = len(tokens)
        self._doc[slot] = self._doc_codes.code(chunk.doc_id)
        self._source[slot] = self._source_codes.code(chunk.source)
        self._date[slot] = date_key(chunk.published_at) or -1
        for term, tf in Counter(tokens).items():
            slots, tfs = self._buffer.setdefault(term, (array("i"), array("f")))
            slots.append(slot)
            tfs.append(tf)
        self._live += 1
        self._total_length += len(tokens)

    def _remove(self, chunk_id: str) -> None:
        slot = self._slot.pop(chunk_id)
        self._ids[slot] = ""
        self._alive[slot] = False
        self._live -= 1
        self._total_length -= float(self._length[slot])

    def _postings(self, term: str) -> tuple[np.ndarray, np.ndarray] | None:
        buffered = self._buffer.pop(term, None)
        main = self._main.get(term)
        if buffered is not None:
            slots = np.frombuffer(buffered[0], dtype=np.int32)
            tfs = np.frombuffer(buffered[1], dtype=np.float32)
            main = (np.concatenate([main[0], slots]), np.concatenate([main[1], tfs])) if main else (slots.copy(), tfs.copy())
            self._main[term] = main
        return main

    def _compact(self) -> None:
        """Drop tombstones: renumber live slots and rewrite every posting list."""
        for term in list(self._buffer):
            self._postings(term)
        n = len(self._ids)
        alive = self._alive[:n]
        remap = np.full(n, -1, dtype=np.int32)
        remap[alive] = np.arange(int(alive.sum()), dtype=np.int32)
        main: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for term, (slots, tfs) in self._main.items():
            keep = alive[slots]
            if keep.any():
                main[term] = (remap[slots[keep]], tfs[keep])
        self._main = main
        self._ids = [c for c in self._ids if c]
        self._slot = {c: i for i, c in enumerate(self._ids)}
        for name in ("_alive", "_length", "_doc", "_source", "_date"):
            setattr(self, name, getattr(self, name)[:n][alive].copy())

    # keeping in step with the store
    def sync(self) -> bool:
        """Apply the store's changes since the last look; True when anything changed."""
        with self._lock:
            generation = self.store.generation()
            if generation == self._generation and self._verified:
                return False
            t0 = time.perf_counter()
            n_added = n_removed = 0
            how = "log"
            delta = self._logged_changes(generation)
            if delta is not None:
                n_added, n_removed = self._apply(*delta)
                if not self._verified and self._live != self.store.count_chunks():
                    delta = None  # a loaded file, or the first look: the count shows writes the log never saw
            if delta is None:
                how = "full comparison"
                current = self.store.chunk_ids()
                now = set(current)
                a, r = self._apply([c for c in current if c not in self._slot], [c for c in self._slot if c not in now])
                n_added, n_removed = n_added + a, n_removed + r
            self._verified = True
            self._generation = generation
            tombstones = len(self._ids) - self._live
            if tombstones and tombstones > self.compact_ratio * len(self._ids):
                self._compact()
            changed = bool(n_added or n_removed)
            if changed:
                log.info("BM25 (%s): +%d -%d chunks (%d live) in %.2f s", how, n_added, n_removed, self._live, time.perf_counter() - t0)
                self._unsaved += n_added + n_removed
                if self._unsaved > SAVE_FRACTION * self._live:
                    self.flush()  # a build or a large batch; small writes wait for flush() at shutdown
            return changed

    def _logged_changes(self, generation: str) -> tuple[list[str], list[str]] | None:
        """What the store's change log says happened since this index's generation; None when it cannot say."""
        mine, theirs = log_position(self._generation), log_position(generation)
        if mine is None or theirs is None or mine[1] != theirs[1] or theirs[0] < mine[0]:
            return None
        entries = self.store.changes(mine[0], theirs[0])
        if entries is None:
            return None
        final: dict[str, bool] = {}  # chunk id -> present after the last entry naming it
        for added, removed in entries:
            final.update(dict.fromkeys(removed, False))
            final.update(dict.fromkeys(added, True))
        # a re-written id is removed and added again, so its metadata (filters) is fresh
        return [c for c, present in final.items() if present], [c for c, present in final.items() if not present or c in self._slot]

    def _apply(self, added: list[str], removed: list[str]) -> tuple[int, int]:
        """Remove, then add (ids deleted meanwhile are simply not found); returns how many of each."""
        n_removed = n_added = 0
        for chunk_id in removed:
            if chunk_id in self._slot:
                self._remove(chunk_id)
                n_removed += 1
        self._grow(len(added))
        for i in range(0, len(added), 5000):
            for chunk in self.store.get_chunks(added[i : i + 5000]):
                if chunk.chunk_id not in self._slot:
                    self._add(chunk)
                    n_added += 1
        return n_added, n_removed

    def flush(self) -> None:
        """Write the index file if it is behind (the service calls this on shutdown)."""
        with self._lock:
            if self.path is not None and self._unsaved:
                self._save(self.path)
                self._unsaved = 0

    # queries
    def _live_postings(self, term: str) -> tuple[np.ndarray, np.ndarray] | None:
        """Slots and term frequencies of the live chunks holding term (df is their count)."""
        got = self._postings(term)
        if got is None:
            return None
        live = self._alive[got[0]]
        return (got[0][live], got[1][live]) if live.any() else None

    def _doc_freqs(self, terms: set[str]) -> tuple[int, dict[str, int]]:
        """The live chunk count and each (tokenized) term's document frequency.

        Called right after a query, so it syncs only an index that has never synced: one store round trip per ask.
        """
        if self._generation is None:
            self.sync()
        with self._lock:
            return self._live, {t: len(got[0]) if (got := self._live_postings(t)) else 0 for t in terms}

    def mentions(self, word: str) -> bool:
        """Whether some stored chunk holds each of the word's tokens: a name the archive has seen somewhere."""
        return all(self._doc_freqs(set(tokenize(word)))[1].values())

    def term_weights(self, terms: set[str]) -> dict[str, float]:
        """IDF of each (tokenized) term over the stored chunks; a term no chunk holds gets the largest weight."""
        live, df = self._doc_freqs(terms)
        return {t: math.log(1 + live / (1 + n)) for t, n in df.items()}

    def _mask(self, where: Where) -> np.ndarray | None:
        n = len(self._ids)
        mask = self._alive[:n].copy()
        if where.empty:
            return mask
        if where.source is not None:
            code = self._source_codes.index.get(where.source)
            if code is None:
                return None
            mask &= self._source[:n] == code
        if where.doc_id is not None:
            code = self._doc_codes.index.get(where.doc_id)
            if code is None:
                return None
            mask &= self._doc[:n] == code
        if where.after is not None or where.before is not None:
            dates = self._date[:n]
            mask &= dates >= 0
            if where.after is not None:
                mask &= dates >= where.after
            if where.before is not None:
                mask &= dates <= where.before
        if where.as_of is not None:
            dates = self._date[:n]
            mask &= (dates < 0) | (dates <= where.as_of)
        return mask

    def admits(self, chunk_ids: list[str], where: Where) -> list[bool]:
        """Whether each chunk passes the filter, from the in-memory columns; a chunk the index does not hold is not
        admitted (the caller falls back to the store's own filter). It does not sync: the caller has just synced
        (a query does), so a filtered search costs one store round trip for the index, not two."""
        with self._lock:
            mask = self._mask(where)
            if mask is None:
                return [False] * len(chunk_ids)
            slots = [self._slot.get(cid) for cid in chunk_ids]
            return [slot is not None and bool(mask[slot]) for slot in slots]

    def dates_of(self, chunk_ids: list[str]) -> dict[str, int]:
        """Publication date keys (YYYYMMDD) of the given chunks, without a store round trip; undated ones are left out."""
        with self._lock:
            out: dict[str, int] = {}
            for cid in chunk_ids:
                slot = self._slot.get(cid)
                if slot is not None and self._date[slot] > 0:
                    out[cid] = int(self._date[slot])
            return out

    def query(self, text: str, k: int, where: Where) -> list[Hit]:
        scored = self.query_ids(text, k, where)
        score_of = dict(scored)
        return [Hit(c, score_of[c.chunk_id]) for c in self.store.get_chunks([c for c, _ in scored])]

    def query_ids(self, text: str, k: int, where: Where) -> list[tuple[str, float]]:
        """The k best chunk ids with their BM25 scores, best first (no store round trip)."""
        self.sync()
        terms = tokenize(text)
        with self._lock:
            if not terms or not self._live:
                return []
            n = len(self._ids)
            avg = self._total_length / self._live
            scores = np.zeros(n, dtype=np.float32)
            for term in terms:
                got = self._live_postings(term)
                if got is None:
                    continue
                slots, tfs = got
                df = len(slots)
                idf = math.log(1 + (self._live - df + 0.5) / (df + 0.5))
                norm = self.k1 * (1 - self.b + self.b * self._length[slots] / avg)
                scores[slots] += idf * tfs * (self.k1 + 1) / (tfs + norm)
            mask = self._mask(where)
            if mask is None:
                return []
            scores[~mask] = 0.0
            k = min(k, n)
            top = np.argpartition(-scores, k - 1)[:k]
            return [(self._ids[int(i)], float(scores[i])) for i in top[np.argsort(-scores[top])] if scores[i] > 0]

    # persistence
    def _save(self, path: Path) -> None:
        for term in list(self._buffer):
            self._postings(term)
        if len(self._ids) != self._live:
            self._compact()
        terms = list(self._main)
        lengths = np.array([len(self._main[t][0]) for t in terms], dtype=np.int64)
        n = len(self._ids)
        header = {
            "format": FORMAT,
            "generation": self._generation,
            "terms": terms,
            "ids": self._ids,
            "docs": self._doc_codes.values,
            "sources": self._source_codes.values,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        with open(tmp, "wb") as fh:
            np.savez(
                fh,
                header=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8),
                offsets=np.concatenate([[0], np.cumsum(lengths)]),
                slots=np.concatenate([self._main[t][0] for t in terms]) if terms else np.zeros(0, np.int32),
                tfs=np.concatenate([self._main[t][1] for t in terms]) if terms else np.zeros(0, np.float32),
                length=self._length[:n],
                doc=self._doc[:n],
                source=self._source[:n],
                date=self._date[:n],
            )
        os.replace(tmp, path)

    def _load(self, path: Path) -> None:
        if not path.exists():
            return
        try:
            with np.load(path, allow_pickle=False) as z:
                header = json.loads(z["header"].tobytes())
                if header.get("format") != FORMAT:
                    return
                offsets, slots, tfs = z["offsets"], z["slots"], z["tfs"]
                self._main = {t: (slots[offsets[i] : offsets[i + 1]], tfs[offsets[i] : offsets[i + 1]]) for i, t in enumerate(header["terms"])}
                self._length, self._doc, self._source, self._date = (z[k].copy() for k in ("length", "doc", "source", "date"))
        except (OSError, ValueError, KeyError) as exc:
            log.warning("BM25 index file %s unreadable (%s); rebuilding from the store", path, exc)
            self._reset()
            return
        self._ids = list(header["ids"])
        self._slot = {c: i for i, c in enumerate(self._ids)}
        self._alive = np.ones(len(self._ids), dtype=bool)
        self._doc_codes, self._source_codes = _Codes(header["docs"]), _Codes(header["sources"])
        self._live = len(self._ids)
        self._total_length = float(self._length.sum())
        self._generation = header.get("generation")
        log.info("BM25 index loaded from %s (%d chunks)", path, self._live)
