"""Backup and restore: export -> import gives the same documents, chunks and search results, on embedded Chroma and
on a `chroma run` server; a truncated or tampered file is refused with nothing written."""

from __future__ import annotations

import gzip
import json
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from qa_service.backup import BadArchive, export, read, restore
from qa_service.config import Settings
from qa_service.embedding import SentenceTransformerEmbedder
from qa_service.ingest.loaders import Article, Loaded, load_paths
from qa_service.service import QAService

from .conftest import SEEDS
from .news_fixtures import FERRY, LIBRARY

QUESTIONS = ["Who relayed the US request to Iranian officials?", "asylum seekers towed back", "ferry captain Kestrel Island",
             "library named after a poet", "Kremlin spokesman"]

Make = Callable[[str], QAService]


@pytest.fixture(params=["embedded", pytest.param("server", marks=pytest.mark.server)])
def make(request: pytest.FixtureRequest, tmp_path: Path, embedder: SentenceTransformerEmbedder) -> Make:
    """A service on a named collection of one backend; several may share it."""
    made: list[QAService] = []
    url = request.getfixturevalue("chroma_server") if request.param == "server" else None
    prefix = uuid.uuid4().hex[:6]

    def build(collection: str) -> QAService:
        s = Settings(chroma_url=url, collection=f"{collection}-{prefix}", data_dir=tmp_path / ("store" if url is None else f"lock-{collection}"))
        svc = QAService(s, embedder=embedder, load_llm=False)
        made.append(svc)
        return svc

    request.addfinalizer(lambda: [svc.close() for svc in made])
    return build


def filled(svc: QAService) -> QAService:
    svc.ingest(load_paths([SEEDS]))
    svc.ingest([Loaded(t, Article(title=t, text="\n\n".join(p), source="Harbour Gazette", published_at="2026-11-03", author="Jo Reyes"))
                for t, p in (FERRY, LIBRARY)])
    return svc


def snapshot(svc: QAService) -> tuple[list[tuple[str, ...]], int, list[list[tuple[str, str]]]]:
    docs, _ = svc.store.list_documents(0, 1000)
    rows = sorted((d.doc_id, d.title, d.text, d.content_hash, str(d.source), str(d.url), str(d.published_at), str(d.author), *sorted(d.chunk_ids))
                  for d in docs)
    results = [[(r.doc_id, r.chunk_id) for r in svc.search(q, 5)] for q in QUESTIONS]
    return rows, svc.store.count_chunks(), results


def test_round_trip_gives_the_same_documents_chunks_and_search_results(make: Make, tmp_path: Path) -> None:
    source = filled(make("origin"))
    archive = tmp_path / "news.jsonl.gz"
    manifest = export(source, archive)
    assert manifest["documents"] == source.list_documents().total and manifest["chunks"] == source.store.count_chunks()
    assert manifest["embedding_model"] == "all-MiniLM-L6-v2" and len(manifest["documents_sha256"]) == 64

    target = make("restored")
    _, report, notes = restore(target, archive)
    assert report.added == manifest["documents"] and report.failed == 0 and notes == []
    assert snapshot(target) == snapshot(source)
    # idempotent: again, nothing is written
    _, again, _ = restore(target, archive)
    assert (again.added, again.updated, again.unchanged) == (0, 0, manifest["documents"])
    assert snapshot(target) == snapshot(source)


def test_import_into_a_collection_holding_some_of_the_documents_adds_the_rest(make: Make, tmp_path: Path) -> None:
    source = filled(make("origin"))
    archive = tmp_path / "news.jsonl.gz"
    export(source, archive)
    target = make("partial")
    target.ingest(load_paths([SEEDS / "wikinews-1013125.md"]))
    _, report, _ = restore(target, archive)
    assert report.unchanged == 1 and report.added == source.list_documents().total - 1
    (docs, chunks, results), (docs0, chunks0, results0) = snapshot(target), snapshot(source)
    assert (docs, chunks) == (docs0, chunks0)
    # another insertion order builds another HNSW graph: ties and near-ties may swap below the top
    assert [r[0] for r in results] == [r[0] for r in results0]


def _rewrite(archive: Path, change: Callable[[list[str]], list[str]]) -> None:
    lines = gzip.decompress(archive.read_bytes()).decode().splitlines(keepends=True)
    archive.write_bytes(gzip.compress("".join(change(lines)).encode()))


def _edit_text(lines: list[str]) -> list[str]:
    doc = json.loads(lines[0])
    doc["text"] = doc["text"].replace("a", "4", 1)
    return [json.dumps(doc, ensure_ascii=False, sort_keys=True) + "\n", *lines[1:]]


def _edit_both(lines: list[str]) -> list[str]:
    # a careful forger recomputes the document's content hash; the manifest's digest still catches it
    from qa_service.backup import _article

    doc = json.loads(lines[0])
    doc["title"] = "Forged title"
    doc["content_hash"] = _article(doc).content_hash
    return [json.dumps(doc, ensure_ascii=False, sort_keys=True) + "\n", *lines[1:]]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "not a complete gzip export"),
        (lambda p: _rewrite(p, lambda lines: lines[:-1]), "is missing: the file is truncated"),
        (lambda p: _rewrite(p, lambda lines: lines[1:]), "lists"),
        (lambda p: _rewrite(p, _edit_text), "does not match"),
        (lambda p: _rewrite(p, _edit_both), "sha256"),
        (lambda p: _rewrite(p, lambda lines: [*lines, '{"extra": 1}\n']), "after the manifest"),
        (lambda p: p.write_bytes(b"not gzip at all"), "not a complete gzip export"),
        (lambda p: _rewrite(p, lambda lines: ['{"title": "x"}\n', *lines]), "not a document"),
    ],
)
def test_a_truncated_or_tampered_archive_is_refused_and_nothing_is_written(make: Make, tmp_path: Path, damage: Callable[[Path], None], message: str) -> None:
    source = filled(make("origin"))
    archive = tmp_path / "news.jsonl.gz"
    export(source, archive)
    damage(archive)
    target = make("victim")
    target.ingest(load_paths([SEEDS / "wikinews-1013125.md"]))
    before = snapshot(target)
    with pytest.raises(BadArchive, match=message):
        restore(target, archive)
    assert snapshot(target) == before


def test_cli_export_import(tmp_path: Path, embedder: SentenceTransformerEmbedder, monkeypatch: pytest.MonkeyPatch) -> None:
    from qa_service import cli

    s = Settings(data_dir=tmp_path / "store", collection="desk-a")
    filled(QAService(s, embedder=embedder, load_llm=False)).close()
    monkeypatch.setattr(cli, "_overrides", {"data_dir": s.data_dir})
    runner = CliRunner()
    archive = tmp_path / "desk-a.jsonl.gz"
    out = runner.invoke(cli.app, ["export", "--collection", "desk-a", "--out", str(archive)])
    assert out.exit_code == 0 and "of desk-a to" in out.output, out.output
    manifest, docs = read(archive)
    assert manifest["collection"] == "desk-a" and len(docs) == manifest["documents"]
    done = runner.invoke(cli.app, ["import", str(archive), "--collection", "desk-b"])
    assert done.exit_code == 0 and f"added {manifest['documents']}" in done.output, done.output
    archive.write_bytes(archive.read_bytes()[:100])
    bad = runner.invoke(cli.app, ["import", str(archive), "--collection", "desk-b"])
    assert bad.exit_code == 1 and "bad_archive" in bad.output
