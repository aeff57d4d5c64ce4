"""Adding, refreshing and removing sources. The writes to the store go through `QAService.ingest`, under the one
writer lock; fetching happens outside that lock, so a slow feed never holds up other writers.

A refresh: fetch the source with its ETag/Last-Modified (a 304 is a no-op), detect its kind, read its items (the
first QA_FETCH_MAX_ITEMS), take each item's text from the feed when the feed carries the article, else fetch its
page (again conditionally), and ingest them as one batch. An item that fails is a failed item in the report; a
source that fails backs off (its refresh interval doubled per failure in a row, at most a day) and says why in
`last_status`. Items that leave the feed keep their documents; removing a source keeps them unless asked.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
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
from qa_service.sources.registry import Registry, iso, registry_path, source_id

if TYPE_CHECKING:
    from qa_service.service import QAService

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 24 * 3600
SITEMAP_CHILDREN = 20  # sitemaps read from one sitemap index per refresh
MIN_ARTICLE_CHARS = 200  # less text than this from a web page is a menu or a cookie notice, not an article

@dataclass
class _Got:
    """One item's outcome: what to ingest (or why not), and the validators to keep."""

    loaded: Loaded | None
    item: IngestItem | None  # already decided (unchanged by 304, or failed before ingest)
    url: str
    etag: str | None = None
    last_modified: str | None = None
    doc_id: str | None = None


def _failed_item(url: str, why: str) -> IngestItem:
    return IngestItem(origin=url, doc_id=None, status="failed", error=why)


class Sources:
    """Add, list, refresh and remove sources for one service; `refresh_due` is what the scheduler and cron call."""

    def __init__(self, svc: QAService, *, fetcher: Fetcher | None = None) -> None:
        # the parsers are imported here, once: a module first imported by several fetch threads at once can be seen half-made
        import feedparser  # noqa: F401
        import trafilatura  # noqa: F401

        self.svc = svc
        self.settings = svc.settings
        self.registry = Registry(registry_path(self.settings))
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
            next_refresh_at=iso(row["next_due"]) if row["refresh_minutes"] > 0 else None,
            documents=row["documents"],
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
        url = canonical_url(check_url(req.url, self.fetcher.guard))
        sid = source_id(url)
        if not self.registry.add(sid, url, req.kind, req.refresh_minutes):
            raise QAError(f"source {sid} already follows {url}", code="conflict", status=409)
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
                return self._failed(row, started, str(exc))
            status = "not modified" if got.not_modified else "ok"
            if report.failed:
                status += f" ({report.failed} of {len(report.items)} items failed)"
            fields: dict[str, object] = {
                "kind": kind,
                "last_fetched_at": iso(started),
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
            fields={"last_fetched_at": iso(started), "last_status": f"error: {why}", "failures": failures, "next_due": started + wait},
            items=[],
        )
        log.warning("source %s failed (%d in a row): %s", row["id"], failures, why)
        report = IngestReport(failed=1, items=[_failed_item(row["url"], why)])
        return SourceRefresh(source=self.get(row["id"]), report=report)

    def _read(self, row: sqlite3.Row, got: Response, notes: list[str]) -> tuple[Kind | None, IngestReport, list[tuple[str, str | None, str | None, str | None]]]:
        kind: Kind | None = row["kind"]
        if got.not_modified:
            return kind, IngestReport(), []
        if got.status != 200:
            raise FetchError(f"HTTP {got.status} from {got.url}")
        if kind is None:
            found = detect_kind(got.content_type, got.body)
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
            return _Got(None, _failed_item(item.url, str(exc)), item.url)
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
            return _Got(None, _failed_item(item.url, str(exc)), item.url)
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


