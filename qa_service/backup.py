"""Backup and restore of a collection: its documents with their metadata, as gzip-compressed JSON lines.

One line per document, then a trailer line holding the manifest: the format, counts, the chunking and embedding
settings, and a sha256 over every document line. The manifest comes last so an export streams (no archive is held
in memory) and a truncated file is one without its trailer. Import reads the whole file and checks it first (the
gzip stream, the trailer, the digest, each document's content hash), and only then writes: a truncated or tampered
file is refused with nothing written. Writing goes through the normal ingest, so importing into a collection that
already holds some of the documents adds only the others, and importing twice is a no-op. Embeddings are not
exported: import re-embeds, which gives the same vectors for the same model and keeps the file small.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qa_service.errors import BadRequest
from qa_service.ingest.loaders import Article, Loaded
from qa_service.schemas import IngestReport
from qa_service.store.base import utc_stamp

if TYPE_CHECKING:
    from qa_service.service import QAService

FORMAT = "qa-service-export/1"
FIELDS = ("doc_id", "title", "text", "source", "url", "published_at", "author", "content_hash")
PAGE = 500


class BadArchive(BadRequest):  # type: ignore[misc, valid-type]
    """An export file that is truncated, tampered with, or not an export at all."""

    code = "bad_archive"


def export(svc: QAService, out: Path) -> dict[str, Any]:
    """Write the collection's documents to `out` (written beside it, then renamed: never a half file); the manifest."""
    digest = hashlib.sha256()
    documents = chunks = 0
    tmp = out.with_name(out.name + ".partial")
    with gzip.open(tmp, "wt", encoding="utf-8") as f:
        offset = 0
        while True:
            page, total = svc.store.list_documents(offset, PAGE)
            for d in page:
                line = json.dumps({k: getattr(d, k) for k in FIELDS}, ensure_ascii=False, sort_keys=True)
                digest.update(line.encode() + b"\n")
                f.write(line + "\n")
                documents += 1
                chunks += len(d.chunk_ids)
            offset += len(page)
            if not page or offset >= total:
                break
        s = svc.settings
        manifest = {
            "format": FORMAT,
            "collection": s.collection,
            "created_at": utc_stamp(time.time()),
            "documents": documents,
            "chunks": chunks,
            "documents_sha256": digest.hexdigest(),
            "chunk_size": s.chunk_size,
            "chunk_overlap": s.chunk_overlap,
            "embedding_model": s.embedding_model,
            "embedding_backend": s.embedding_backend,
        }
        f.write(json.dumps({"manifest": manifest}, sort_keys=True) + "\n")
    os.replace(tmp, out)
    return manifest


def _lines(path: Path) -> Iterator[str]:
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            yield from f
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as exc:
        raise BadArchive(f"{path.name} is not a complete gzip export: {exc}") from None


def read(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The manifest and the documents of an export, after every check; BadArchive when one fails."""
    if not path.is_file():
        raise BadArchive(f"no such file: {path}")
    digest = hashlib.sha256()
    docs: list[dict[str, Any]] = []
    manifest: dict[str, Any] | None = None
    for n, raw in enumerate(_lines(path), 1):
        if manifest is not None:
            raise BadArchive(f"line {n}: data after the manifest")
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError:
            raise BadArchive(f"line {n} is not JSON (a truncated or edited file)") from None
        if isinstance(obj, dict) and set(obj) == {"manifest"}:
            manifest = obj["manifest"]
            continue
        if not isinstance(obj, dict) or set(obj) != set(FIELDS):
            raise BadArchive(f"line {n} is not a document of this format")
        digest.update(raw.rstrip("\n").encode() + b"\n")
        docs.append(obj)
    if manifest is None:
        raise BadArchive("the manifest (the last line) is missing: the file is truncated")
    _check(manifest, docs, digest.hexdigest())
    return manifest, docs


def _check(manifest: dict[str, Any], docs: list[dict[str, Any]], sha256: str) -> None:
    if manifest.get("format") != FORMAT:
        raise BadArchive(f"unknown format {manifest.get('format')!r}; expected {FORMAT}")
    if manifest.get("documents") != len(docs):
        raise BadArchive(f"the manifest lists {manifest.get('documents')} documents, the file holds {len(docs)}")
    for d in docs:
        if _article(d).content_hash != d["content_hash"]:
            raise BadArchive(f"document {d['doc_id']!r} does not match its content hash")
    if manifest.get("documents_sha256") != sha256:
        raise BadArchive("the documents do not match the manifest's sha256: the file was changed after export")


def _article(d: dict[str, Any]) -> Article:
    return Article(title=d["title"], text=d["text"], id=d["doc_id"], source=d["source"], url=d["url"], published_at=d["published_at"], author=d["author"])


def restore(svc: QAService, path: Path) -> tuple[dict[str, Any], IngestReport, list[str]]:
    """Check the whole file, then ingest it; the manifest, the ingest report and notes (settings that differ)."""
    manifest, docs = read(path)
    s = svc.settings
    notes = [
        f"{name} was {manifest.get(name)!r} at export and is {getattr(s, name)!r} here: chunks and search results may differ"
        for name in ("chunk_size", "chunk_overlap", "embedding_model")
        if manifest.get(name) != getattr(s, name)
    ]
    report = svc.ingest(Loaded(f"{path.name}:{i + 1}", _article(d)) for i, d in enumerate(docs))
    return manifest, report, notes
