"""The sources registry: a SQLite file per collection beside the store (data_dir/sources/<collection>.sqlite3) holding the sources, their fetch
state (validators, failures, when they are due) and which documents each brought in. SQLite is safe across the
API's worker processes; every call opens a short connection.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from qa_service.config import Settings
from qa_service.ingest.feeds import Kind, canonical_url
from qa_service.store.base import utc_stamp

SCHEMA = """
CREATE TABLE IF NOT EXISTS sources (
    id TEXT PRIMARY KEY, url TEXT NOT NULL UNIQUE, kind TEXT, refresh_minutes INTEGER NOT NULL, created_at TEXT NOT NULL,
    last_fetched_at TEXT, last_status TEXT, failures INTEGER NOT NULL DEFAULT 0, next_due REAL, etag TEXT, last_modified TEXT
);
CREATE TABLE IF NOT EXISTS items (
    source_id TEXT NOT NULL, url TEXT NOT NULL, doc_id TEXT, etag TEXT, last_modified TEXT, seen_at TEXT,
    PRIMARY KEY (source_id, url)
);
CREATE INDEX IF NOT EXISTS items_doc ON items (doc_id);
"""
SOURCE_ROWS = (
    "SELECT s.*, (SELECT COUNT(DISTINCT i.doc_id) FROM items i WHERE i.source_id = s.id AND i.doc_id IS NOT NULL) AS documents FROM sources s"
)


def registry_path(settings: Settings) -> Path:
    return settings.data_dir / "sources" / f"{settings.collection}.sqlite3"


def iso(ts: float | None) -> str | None:
    return None if ts is None else utc_stamp(ts)


def source_id(url: str) -> str:
    return "src_" + hashlib.sha256(canonical_url(url).encode()).hexdigest()[:12]


class Registry:
    """The sources and their items in SQLite; one short connection per call, so threads and processes share it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._db() as db:
            db.executescript(SCHEMA)

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30)
        db.row_factory = sqlite3.Row
        try:
            db.execute("PRAGMA journal_mode=WAL")
            with db:
                yield db
        finally:
            db.close()

    def add(self, sid: str, url: str, kind: Kind | None, refresh_minutes: int) -> bool:
        """False when a source with this id (the same canonical URL) exists."""
        with self._db() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO sources (id, url, kind, refresh_minutes, created_at, next_due) VALUES (?, ?, ?, ?, ?, ?)",
                (sid, url, kind, refresh_minutes, iso(time.time()), time.time()),
            )
            return cur.rowcount == 1

    def row(self, sid: str) -> sqlite3.Row | None:
        """A source's fields and `documents`, how many documents it brought in."""
        with self._db() as db:
            row: sqlite3.Row | None = db.execute(f"{SOURCE_ROWS} WHERE s.id = ?", (sid,)).fetchone()
            return row

    def rows(self) -> list[sqlite3.Row]:
        with self._db() as db:
            return list(db.execute(f"{SOURCE_ROWS} ORDER BY s.created_at, s.id"))

    def due(self, now: float) -> list[str]:
        with self._db() as db:
            return [r["id"] for r in db.execute("SELECT id FROM sources WHERE refresh_minutes > 0 AND next_due <= ? ORDER BY next_due", (now,))]

    def items(self, sid: str) -> dict[str, sqlite3.Row]:
        with self._db() as db:
            return {r["url"]: r for r in db.execute("SELECT * FROM items WHERE source_id = ?", (sid,))}

    def record(self, sid: str, *, fields: dict[str, object], items: list[tuple[str, str | None, str | None, str | None]]) -> None:
        """One refresh's outcome: the source's fields and its items (url, doc_id, etag, last_modified), in one transaction."""
        with self._db() as db:
            if db.execute("SELECT 1 FROM sources WHERE id = ?", (sid,)).fetchone() is None:
                return  # removed while it was being refreshed
            names = ", ".join(f"{k} = ?" for k in fields)
            db.execute(f"UPDATE sources SET {names} WHERE id = ?", (*fields.values(), sid))  # noqa: S608 -- the names are this module's
            now = iso(time.time())
            db.executemany(
                "INSERT INTO items (source_id, url, doc_id, etag, last_modified, seen_at) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (source_id, url) DO UPDATE SET doc_id = COALESCE(excluded.doc_id, doc_id), etag = excluded.etag, "
                "last_modified = excluded.last_modified, seen_at = excluded.seen_at",
                [(sid, url, doc, etag, lm, now) for url, doc, etag, lm in items],
            )

    def remove(self, sid: str) -> list[str]:
        """Delete the source; returns the documents no other source brought in (the ones it may take along)."""
        with self._db() as db:
            own = [r[0] for r in db.execute(
                "SELECT DISTINCT doc_id FROM items WHERE source_id = ? AND doc_id IS NOT NULL "
                "AND doc_id NOT IN (SELECT doc_id FROM items WHERE source_id != ? AND doc_id IS NOT NULL)",
                (sid, sid),
            )]
            db.execute("DELETE FROM items WHERE source_id = ?", (sid,))
            db.execute("DELETE FROM sources WHERE id = ?", (sid,))
            return own
