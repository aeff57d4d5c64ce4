"""News sources: feeds, sitemaps and pages the service follows, refreshed on a schedule into the store.

The registry is a SQLite file beside the store (data_dir/sources.sqlite3): the sources, their fetch state
(validators, failures, when they are due) and which documents each brought in. SQLite is safe across the API's
worker processes; the writes to the store itself go through `QAService.ingest`, under the one writer lock, and
fetching happens outside that lock, so a slow feed never holds up other writers.

A refresh: fetch the source with its ETag/Last-Modified (a 304 is a no-op), detect its kind, read its items (the
first QA_FETCH_MAX_ITEMS), take each item's text from the feed when the feed carries the article, else fetch its
page (again conditionally), and ingest them as one batch. An item that fails is a failed item in the report; a
source that fails backs off (its refresh interval doubled per failure in a row, at most a day) and says why in
`last_status`. Items that leave the feed keep their documents; removing a source keeps them unless asked.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from qa_service.errors import NotFound, QAError
from qa_service.ingest.feeds import (
    Item,
    Kind,
    ParseError,
    canonical_url,
    check_content_type,
    count_entries,
    detect_kind,
    parse_feed,
    parse_sitemap,
)
from qa_service.ingest.fetch import Blocked, Fetcher, FetchError, Response, check_url
from qa_service.ingest.loaders import Article, Loaded, LoadError, load_html
from qa_service.schemas import IngestItem, IngestReport, Source, SourceIn, SourceRefresh

if TYPE_CHECKING:
    from qa_service.service import QAService

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 24 * 3600
SITEMAP_CHILDREN = 20  # sitemaps read from one sitemap index per refresh
MIN_ARTICLE_CHARS = 200  # less text than this from a web page is a menu or a cookie notice, not an article

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


def _iso(ts: float | None) -> str | None:
    return None if ts is None else dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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
                (sid, url, kind, refresh_minutes, _iso(time.time()), time.time()),
            )
            return cur.rowcount == 1

    def row(self, sid: str) -> sqlite3.Row | None:
        with self._db() as db:
            row: sqlite3.Row | None = db.execute("SELECT * FROM sources WHERE id = ?", (sid,)).fetchone()
            return row

    def rows(self) -> list[sqlite3.Row]:
        with self._db() as db:
            return list(db.execute("SELECT * FROM sources ORDER BY created_at, id"))

    def due(self, now: float) -> list[str]:
        with self._db() as db:
            return [r["id"] for r in db.execute("SELECT id FROM sources WHERE refresh_minutes > 0 AND next_due <= ? ORDER BY next_due", (now,))]

    def documents(self, sid: str) -> int:
        with self._db() as db:
            return int(db.execute("SELECT COUNT(DISTINCT doc_id) FROM items WHERE source_id = ? AND doc_id IS NOT NULL", (sid,)).fetchone()[0])

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
            now = _iso(time.time())
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


@dataclass
class _Got:
    """One item's outcome: what to ingest (or why not), and the validators to keep."""

    loaded: Loaded | None
    item: IngestItem | None  # already decided (unchanged by 304, or failed before ingest)
    url: str
    etag: str | None = None
    last_modified: str | None = None
    doc_id: str | None = None


class Sources:
    """Add, list, refresh and remove sources for one service; `refresh_due` is what the scheduler and cron call."""

    def __init__(self, svc: QAService, *, fetcher: Fetcher | None = None) -> None:
        # the parsers are imported here, once: a module first imported by several fetch threads at once can be seen half-made
        import feedparser  # noqa: F401
        import trafilatura  # noqa: F401

        self.svc = svc
        self.settings = svc.settings
        self.registry = Registry(self.settings.data_dir / "sources.sqlite3")
        self.fetcher = fetcher or Fetcher(self.settings)
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def close(self) -> None:
        self.fetcher.close()

    def _view(self, row: sqlite3.Row) -> Source:
        return Source(
            id=row["id"],
            url=row["url"],
            kind=row["kind"],
            refresh_minutes=row["refresh_minutes"],
            created_at=row["created_at"],
            last_fetched_at=row["last_fetched_at"],
            last_status=row["last_status"],
            failures=row["failures"],
            next_refresh_at=_iso(row["next_due"]) if row["refresh_minutes"] > 0 else None,
            documents=self.registry.documents(row["id"]),
        )

    def get(self, sid: str) -> Source:
        row = self.registry.row(sid)
        if row is None:
            raise NotFound(f"no source {sid!r}")
        return self._view(row)

    def all(self) -> list[Source]:
        return [self._view(r) for r in self.registry.rows()]

    def add(self, req: SourceIn) -> SourceRefresh:
        """Register a source and refresh it once (which detects its kind); a failed first fetch still registers it."""
        url = check_url(req.url, self.fetcher.guard)
        sid = source_id(url)
        if not self.registry.add(sid, canonical_url(url), req.kind, req.refresh_minutes):
            raise QAError(f"source {sid} already follows {canonical_url(url)}", code="conflict", status=409)
        return self.refresh(sid)

    def remove(self, sid: str, *, delete_documents: bool = False) -> int:
        """Stop following a source; with `delete_documents`, delete the documents only it brought in. Returns how many."""
        with self._lock(sid):
            if self.registry.row(sid) is None:
                raise NotFound(f"no source {sid!r}")
            own = self.registry.remove(sid)
        deleted = 0
        if delete_documents:
            for doc_id in own:
                try:
                    self.svc.delete(doc_id)
                    deleted += 1
                except NotFound:
                    pass  # deleted by hand already
        return deleted

    def _lock(self, sid: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(sid, threading.Lock())

    def refresh_due(self) -> list[SourceRefresh]:
        """Refresh every due source, one after another; one broken source never stops the rest."""
        out = []
        for sid in self.registry.due(time.time()):
            try:
                out.append(self.refresh(sid))
            except NotFound:
                continue  # removed meanwhile
            except Exception:  # a bug in one source's refresh must not end the scheduler
                log.exception("refresh of %s failed", sid)
        return out

    def refresh(self, sid: str) -> SourceRefresh:
        with self._lock(sid):
            row = self.registry.row(sid)
            if row is None:
                raise NotFound(f"no source {sid!r}")
            started = time.time()
            notes: list[str] = []
            try:
                got = self.fetcher.get(row["url"], etag=row["etag"], last_modified=row["last_modified"])
                kind, report, items = self._read(row, got, notes)
            except (FetchError, ParseError, LoadError, Blocked) as exc:
                return self._failed(row, started, str(getattr(exc, "message", exc)))
            status = "not modified" if got.not_modified else "ok"
            if report.failed:
                status += f" ({report.failed} of {len(report.items)} items failed)"
            fields: dict[str, object] = {
                "kind": kind,
                "last_fetched_at": _iso(started),
                "last_status": status,
                "failures": 0,
                "next_due": started + row["refresh_minutes"] * 60,
            }
            if not got.not_modified:
                fields.update(etag=got.etag, last_modified=got.last_modified)
            self.registry.record(sid, fields=fields, items=items)
            log.info("source %s refreshed: %s", sid, status)
            return SourceRefresh(source=self.get(sid), report=report, notes=notes)

    def _failed(self, row: sqlite3.Row, started: float, why: str) -> SourceRefresh:
        failures = row["failures"] + 1
        wait = min(max(row["refresh_minutes"], 1) * 60 * 2 ** (failures - 1), MAX_BACKOFF_S)
        self.registry.record(
            row["id"],
            fields={"last_fetched_at": _iso(started), "last_status": f"error: {why}", "failures": failures, "next_due": started + wait},
            items=[],
        )
        log.warning("source %s failed (%d in a row): %s", row["id"], failures, why)
        report = IngestReport(failed=1, items=[IngestItem(origin=row["url"], doc_id=None, status="failed", error=why)])
        return SourceRefresh(source=self.get(row["id"]), report=report)

    def _read(self, row: sqlite3.Row, got: Response, notes: list[str]) -> tuple[Kind | None, IngestReport, list[tuple[str, str | None, str | None, str | None]]]:
        kind: Kind | None = row["kind"]
        if got.not_modified:
            return kind, IngestReport(), []
        if got.status != 200:
            raise FetchError(f"HTTP {got.status} from {got.url}")
        found = detect_kind(got.content_type, got.body)
        if kind is None:
            if found is None:
                raise ParseError(f"{got.url} is neither a feed, a sitemap nor an HTML page (content type {got.content_type or 'none'})")
            kind = found
        check_content_type(got.content_type, kind)
        limit = self.settings.fetch_max_items
        if kind == "page":
            results = [self._page(Item(url=canonical_url(got.url)), got)]
        else:
            entries = self._entries(kind, got, limit)
            total = count_entries(got.body)
            if total > limit:
                notes.append(f"{total} entries; only the first {limit} were read (QA_FETCH_MAX_ITEMS)")
            known = self.registry.items(row["id"])
            with ThreadPoolExecutor(self.settings.fetch_concurrency, thread_name_prefix="qa-fetch") as pool:
                results = list(pool.map(lambda it: self._item(it, known.get(it.url)), entries))
        return kind, self._ingest(results), [(r.url, r.doc_id, r.etag, r.last_modified) for r in results]

    def _entries(self, kind: Kind, got: Response, limit: int) -> list[Item]:
        if kind == "feed":
            return parse_feed(got.body, got.url, max_items=limit).items
        parsed = parse_sitemap(got.body, got.url, max_items=limit)
        items = parsed.items
        for child in parsed.sitemaps[:SITEMAP_CHILDREN]:
            if len(items) >= limit:
                break
            sub = self.fetcher.get(child)
            if sub.status == 200:
                items.extend(parse_sitemap(sub.body, sub.url, max_items=limit - len(items)).items)
        # newest first, so the cap keeps the latest news
        return sorted(items, key=lambda it: it.published_at or "", reverse=True)[:limit]

    def _item(self, item: Item, known: sqlite3.Row | None) -> _Got:
        if item.text:
            return _Got(Loaded(item.url, self._article(item, item.text)), None, item.url)
        try:
            got = self.fetcher.get(item.url, etag=known["etag"] if known else None, last_modified=known["last_modified"] if known else None)
        except (FetchError, Blocked) as exc:
            return _Got(None, IngestItem(origin=item.url, doc_id=None, status="failed", error=str(getattr(exc, "message", exc))), item.url)
        if got.not_modified and known is not None:
            return _Got(None, IngestItem(origin=item.url, doc_id=known["doc_id"], status="unchanged"), item.url, got.etag or known["etag"],
                        got.last_modified or known["last_modified"], known["doc_id"])
        return self._page(item, got)

    def _page(self, item: Item, got: Response) -> _Got:
        try:
            if got.status != 200:
                raise LoadError(f"HTTP {got.status}")
            check_content_type(got.content_type, "page")
            page = load_html(got.body.decode("utf-8", "replace"), stem="page")
            if len(page.text) < MIN_ARTICLE_CHARS:
                raise LoadError(f"the page holds no article text ({len(page.text)} characters extracted)")
        except (LoadError, ParseError) as exc:
            return _Got(None, IngestItem(origin=item.url, doc_id=None, status="failed", error=str(exc)), item.url)
        url = item.url
        if page.url and urlsplit(canonical_url(page.url)).netloc == urlsplit(url).netloc:
            url = canonical_url(page.url)  # the page's own canonical link, on its own host only
        merged = Item(url=url, title=item.title or page.title, published_at=item.published_at or page.published_at, author=item.author or page.author)
        return _Got(Loaded(item.url, self._article(merged, page.text)), None, item.url, got.etag, got.last_modified)

    @staticmethod
    def _article(item: Item, text: str) -> Article:
        return Article(title=item.title or "", text=text, url=item.url, published_at=item.published_at, author=item.author,
                       source=urlsplit(item.url).hostname)

    def _ingest(self, results: list[_Got]) -> IngestReport:
        loaded = [r.loaded for r in results if r.loaded is not None]
        report = self.svc.ingest(loaded) if loaded else IngestReport()
        by_origin = {i.origin: i for i in report.items}
        for r in results:
            if r.loaded is not None:
                done = by_origin.get(r.loaded.origin)
                if done is not None and done.status != "failed":
                    r.doc_id = done.doc_id
            elif r.item is not None:
                report.items.append(r.item)
                if r.item.status == "failed":
                    report.failed += 1
                else:
                    report.unchanged += 1
        return report


class Scheduler:
    """Refreshes due sources in the background of a server. Of several worker processes, the one holding
    data_dir/.scheduler.lock does it; the others keep trying, so one takes over when that worker exits."""

    def __init__(self, sources: Sources, poll_s: float) -> None:
        self.sources = sources
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="qa-sources")
        self._fd: int | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        if self._fd is not None:
            os.close(self._fd)

    def _leader(self) -> bool:
        if self._fd is not None:
            return True
        path = self.sources.settings.data_dir / ".scheduler.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                if self._leader():
                    self.sources.refresh_due()
            except QAError as exc:  # the writer lock busy, the store down: try again next time
                log.warning("scheduled refresh skipped: %s", exc.message)
            except Exception:
                log.exception("scheduled refresh failed")
