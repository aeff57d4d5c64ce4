"""Articles -> chunks -> embeddings -> store, with content hashes so re-ingest of unchanged text is a no-op.

Write order per batch: the journal names the documents being rewritten; the new chunks are upserted (deterministic
ids); then the records switch to them (the acknowledgement) and the old chunks are deleted; then the journal is
cleared. A crash mid-batch leaves chunks no record lists; `recover()` (run before every write and on open)
deletes exactly those, for the journalled documents only, so the store never holds two revisions of a document.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from qa_service.config import Settings
from qa_service.embedding import Embedder
from qa_service.errors import encoder_mismatch, refuse_stale_encoder
from qa_service.ingest.chunking import chunk_text
from qa_service.ingest.loaders import Article, Loaded
from qa_service.schemas import IngestItem, IngestReport
from qa_service.store.base import ChunkRecord, DocRecord, Store

log = logging.getLogger(__name__)

Progress = Callable[[int], None]


@dataclass
class _Pending:
    origin: str
    article: Article
    chunks: list[ChunkRecord]
    status: str


class IngestPipeline:
    def __init__(self, store: Store, embedder: Embedder, settings: Settings) -> None:
        self.store = store
        self.embedder = embedder
        self.settings = settings
        self.batch_chunks = max(settings.embedding_batch_size * 16, 256)

    def chunk(self, article: Article) -> list[ChunkRecord]:
        doc_id, h = article.doc_id, article.content_hash
        return [
            ChunkRecord(
                chunk_id=f"{doc_id}#{h[:10]}-{c.index:04d}",
                doc_id=doc_id,
                text=c.text,
                index=c.index,
                start=c.start,
                end=c.end,
                title=article.title,
                source=article.source,
                url=article.url,
                published_at=article.published_at,
                content_hash=h,
            )
            for c in chunk_text(article.text, self.settings.chunk_size, self.settings.chunk_overlap)
        ]

    def recover(self) -> int:
        """Delete the chunks an interrupted batch left behind; returns how many."""
        doc_ids = self.store.pending()
        if not doc_ids:
            return 0
        records = self.store.get_documents(doc_ids)
        orphans: list[str] = []
        for doc_id, ids in self.store.chunk_ids_by_doc(doc_ids).items():
            keep = set(records[doc_id].chunk_ids) if doc_id in records else set()
            orphans.extend(cid for cid in ids if cid not in keep)
        if orphans:
            self.store.delete_chunks(orphans)
        self.store.clear_pending()
        return len(orphans)

    def rebuild(self, page: int = 200) -> int:
        """Chunk and embed every stored document again, from its record, into an empty chunk index: the repair for
        an index the backend can no longer read (`Store.chunks_readable`). The records are the acknowledged state, so
        a batch that was cut short is resolved as `recover()` would; a record whose chunk ids change (other chunk
        settings since it was written) is updated; a rebuild cut short is started again on the next open. Returns
        the chunks written."""
        self.store.reset_chunks()
        written = offset = 0
        changed: list[DocRecord] = []  # written after the pages are read: a rewritten record may move in the listing
        while True:
            docs, _ = self.store.list_documents(offset, page)
            if not docs:
                break
            offset += len(docs)
            chunks: list[ChunkRecord] = []
            for d in docs:
                article = Article(title=d.title, text=d.text, id=d.doc_id, source=d.source, url=d.url, published_at=d.published_at, author=d.author)
                made = self.chunk(article)
                chunks.extend(made)
                ids = [c.chunk_id for c in made]
                if ids != d.chunk_ids or article.content_hash != d.content_hash:
                    changed.append(replace(d, content_hash=article.content_hash, chunk_ids=ids))
            if chunks:
                self.store.upsert_chunks(chunks, self.embedder.embed([c.text for c in chunks]))
            written += len(chunks)
        if changed:
            self.store.put_documents(changed)
        self.store.set_encoder(self.embedder.identity)
        self.store.chunks_rebuilt()
        return written

    def match_encoder(self, on_change: str) -> int:
        """Make sure the stored vectors are this encoder's: a query vector compared with another model's (or another
        dimension's) vectors ranks nonsense, or fails in the backend. An empty store takes this encoder. A store
        with chunks that records none was written before stores recorded their encoder, by 8-bit int8 weights if it
        kept the default, so it counts as a mismatch. On a mismatch the chunks are embedded again from the records
        (`rebuild`), or, with on_change="refuse", the store is not opened. Returns the chunks written."""
        made_by, mine = self.store.encoder(), self.embedder.identity
        if made_by == mine:
            return 0
        if self.store.count_chunks() == 0:
            self.store.set_encoder(mine)
            return 0
        made_by = made_by or "unrecorded (a store written before stores recorded their encoder)"
        if on_change == "refuse":
            raise encoder_mismatch(
                made_by, mine, "set QA_EMBEDDING_MODEL / QA_EMBEDDING_BACKEND back, or QA_ENCODER_CHANGE=reembed to embed every chunk again"
            )
        log.warning("the chunk vectors were made by the encoder %r; embedding them again with %r", made_by, mine)
        return self.rebuild()

    def ingest(self, items: Iterable[Loaded], progress: Progress | None = None) -> IngestReport:
        self.recover()
        made_by = self.store.encoder()
        refuse_stale_encoder(made_by, self.embedder.identity)
        if made_by is None:
            self.store.set_encoder(self.embedder.identity)
        report = IngestReport()
        window: list[Loaded] = []
        window_chunks = 0
        for item in items:
            if item.article is None:
                report.items.append(IngestItem(origin=item.origin, doc_id=None, status="failed", error=item.error))
                report.failed += 1
                if progress:
                    progress(1)
                continue
            window.append(item)
            window_chunks += max(1, len(item.article.text) // 600)
            if window_chunks >= self.batch_chunks:
                self._flush(window, report, progress)
                window, window_chunks = [], 0
        if window:
            self._flush(window, report, progress)
        return report

    def _flush(self, window: list[Loaded], report: IngestReport, progress: Progress | None) -> None:
        # the last occurrence of an id within one batch wins, as with sequential ingests
        latest: dict[str, Loaded] = {}
        for item in window:
            assert item.article is not None
            latest.pop(item.article.doc_id, None)
            latest[item.article.doc_id] = item
        existing = self.store.get_documents(list(latest))
        pending: list[_Pending] = []
        for doc_id, item in latest.items():
            article = item.article
            assert article is not None
            old = existing.get(doc_id)
            if old is not None and old.content_hash == article.content_hash:
                report.items.append(IngestItem(origin=item.origin, doc_id=doc_id, status="unchanged", chunks=0))
                report.unchanged += 1
                continue
            if len(article.text) > self.settings.max_document_chars:
                report.items.append(
                    IngestItem(
                        origin=item.origin,
                        doc_id=doc_id,
                        status="failed",
                        error=f"document has {len(article.text)} characters, over the {self.settings.max_document_chars} limit",
                    )
                )
                report.failed += 1
                continue
            pending.append(_Pending(item.origin, article, self.chunk(article), "updated" if old else "added"))
        skipped = len(window) - len(latest)
        if pending:
            all_chunks = [c for p in pending for c in p.chunks]
            vectors = self.embedder.embed([c.text for c in all_chunks])
            self.store.mark_pending([p.article.doc_id for p in pending])
            self.store.upsert_chunks(all_chunks, vectors)
            # the records switch to the new chunks first (one write for the batch); old chunks are deleted after
            self.store.put_documents([
                DocRecord(p.article.doc_id, p.article.title, p.article.text, p.article.content_hash, [c.chunk_id for c in p.chunks],
                          p.article.source, p.article.url, p.article.published_at, p.article.author)
                for p in pending
            ])
            current = self.store.chunk_ids_by_doc([p.article.doc_id for p in pending])
            stale: list[str] = []
            for p in pending:
                keep = {c.chunk_id for c in p.chunks}
                stale.extend(cid for cid in current.get(p.article.doc_id, []) if cid not in keep)
                report.items.append(IngestItem(origin=p.origin, doc_id=p.article.doc_id, status=p.status, chunks=len(p.chunks)))
                report.chunks_written += len(p.chunks)
                if p.status == "added":
                    report.added += 1
                else:
                    report.updated += 1
            if stale:
                self.store.delete_chunks(stale)
            self.store.clear_pending()
        if skipped:
            report.unchanged += skipped
        if progress:
            progress(len(window))

    def delete(self, doc_id: str) -> bool:
        doc = self.store.get_document(doc_id)
        ids = self.store.chunk_ids_of(doc_id)
        if doc is None and not ids:
            return False
        # record first, then chunks: a crash in between leaves orphans that recover() removes
        self.store.mark_pending([doc_id])
        self.store.delete_document(doc_id)
        if ids:
            self.store.delete_chunks(ids)
        self.store.clear_pending()
        return True
