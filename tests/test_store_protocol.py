"""The Store protocol's contract, method by method, run against every implementation: embedded Chroma and a real
`chroma run` server. A new backend passes this file before the service may use it."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest

from qa_service.config import Settings
from qa_service.store import open_store
from qa_service.store.base import ChunkRecord, DocRecord, Store, Where, log_position

DIM = 8


@pytest.fixture(params=["embedded", pytest.param("server", marks=pytest.mark.server)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    name = f"p-{uuid.uuid4().hex[:8]}"
    if request.param == "server":
        return open_store(Settings(chroma_url=request.getfixturevalue("chroma_server"), collection=name, data_dir=tmp_path))
    return open_store(Settings(data_dir=tmp_path / "store", collection=name))


def chunk(doc: str, i: int, **kw: str) -> ChunkRecord:
    return ChunkRecord(chunk_id=f"{doc}:{i}", doc_id=doc, text=f"text {doc} {i}", index=i, start=10 * i, end=10 * i + 9, title=doc.title(), **kw)


def vectors(n: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def fill(store: Store) -> tuple[list[ChunkRecord], np.ndarray]:
    chunks = [chunk("a", 0, source="Lusa", published_at="2024-03-01"), chunk("a", 1, source="Lusa", published_at="2024-03-01"), chunk("b", 0, published_at="2025-01-02")]
    vecs = vectors(3)
    store.upsert_chunks(chunks, vecs)
    return chunks, vecs


def test_chunks_round_trip_in_the_order_asked(store: Store) -> None:
    chunks, _ = fill(store)
    got = store.get_chunks(["b:0", "missing", "a:0"])
    assert [c.chunk_id for c in got] == ["b:0", "a:0"]
    assert got[1] == chunks[0]  # every field survives, metadata included
    assert store.count_chunks() == 3
    assert sorted(store.chunk_ids(batch=2)) == ["a:0", "a:1", "b:0"]  # paged reads see every id once
    assert sorted(c.chunk_id for c in store.iter_chunks(batch=2)) == ["a:0", "a:1", "b:0"]
    by_doc = store.chunk_ids_by_doc(["a", "zzz"])
    assert sorted(by_doc["a"]) == ["a:0", "a:1"] and by_doc["zzz"] == []
    assert sorted(store.chunk_ids_of("a")) == ["a:0", "a:1"]


def test_upsert_replaces_and_delete_ignores_unknown_ids(store: Store) -> None:
    fill(store)
    store.upsert_chunks([chunk("a", 0, source="AP")], vectors(1, seed=5))
    assert store.count_chunks() == 3 and store.get_chunks(["a:0"])[0].source == "AP"
    store.delete_chunks(["a:1", "never-was"])
    assert sorted(store.chunk_ids()) == ["a:0", "b:0"]


def test_query_is_nearest_first_and_honours_filters(store: Store) -> None:
    _, vecs = fill(store)
    ids = [cid for cid, _ in store.query(vecs[2], 10, Where())]
    assert ids[0] == "b:0" and len(ids) == 3  # fewer than k when fewer exist
    sim = dict(store.query(vecs[2], 10, Where()))["b:0"]
    assert sim == pytest.approx(1.0, abs=1e-4)  # cosine similarity, not distance
    assert {c for c, _ in store.query(vecs[2], 10, Where(source="Lusa"))} == {"a:0", "a:1"}
    assert {c for c, _ in store.query(vecs[2], 10, Where(doc_id="b"))} == {"b:0"}
    assert {c for c, _ in store.query(vecs[0], 10, Where(after=20250101))} == {"b:0"}
    assert {c for c, _ in store.query(vecs[0], 10, Where(before=20241231))} == {"a:0", "a:1"}
    store.upsert_chunks([chunk("c", 0)], vectors(1, seed=3))  # undated
    assert {c for c, _ in store.query(vecs[0], 10, Where(before=20251231))} == {"a:0", "a:1", "b:0"}  # undated stays out
    assert {c for c, _ in store.query(vecs[0], 10, Where(as_of=20241231))} == {"a:0", "a:1", "c:0"}  # later hidden, undated kept
    assert {c for c, _ in store.query(vecs[0], 10, Where(as_of=20250102))} == {"a:0", "a:1", "b:0", "c:0"}  # the same day is visible
    hits = store.get_chunks_with_embeddings(["a:1"])
    assert hits[0].embedding is not None and np.allclose(hits[0].embedding, vecs[1], atol=1e-5)


def test_change_log_numbers_every_chunk_write(store: Store) -> None:
    assert store.generation() == ""
    fill(store)
    first = log_position(store.generation())
    store.delete_chunks(["a:1"])
    second = log_position(store.generation())
    assert first is not None and second is not None and second[0] == first[0] + 1 and second[1] == first[1]
    assert store.changes(0, second[0]) == [(["a:0", "a:1", "b:0"], []), ([], ["a:1"])]
    store.reset()
    assert store.generation() == "" and store.count_chunks() == 0
    assert store.changes(0, second[0]) is None  # the entries are gone: the caller compares ids instead


def test_reset_chunks_empties_the_index_and_keeps_records_and_journal(store: Store) -> None:
    fill(store)
    store.put_documents([DocRecord(doc_id="a", title="A", text="text a", content_hash="h-a", chunk_ids=["a:0", "a:1"])])
    store.mark_pending(["a"])
    before = log_position(store.generation())
    assert store.chunks_readable()
    store.reset_chunks()
    after = log_position(store.generation())
    assert not store.chunks_readable()  # until the rebuild says it is done: one cut short starts again on open
    assert store.count_chunks() == 0 and store.query(vectors(1)[0], 3, Where()) == []
    store.chunks_rebuilt()
    assert store.chunks_readable()
    assert store.get_document("a") is not None and store.pending() == ["a"]
    assert before is not None and after is not None and after[1] != before[1]  # a new epoch: readers compare every id
    store.upsert_chunks([chunk("a", 0)], vectors(1))
    assert store.chunk_ids_of("a") == ["a:0"]


def test_the_encoder_record_survives_a_chunk_rebuild_and_goes_with_reset(store: Store) -> None:
    assert store.encoder() is None
    store.set_encoder("model-a int8 8d")
    store.set_encoder("model-b fp32 8d")
    assert store.encoder() == "model-b fp32 8d"
    fill(store)
    store.reset_chunks()
    assert store.encoder() == "model-b fp32 8d"  # the rebuild's caller records the new one when it is done
    store.chunks_rebuilt()
    store.reset()
    assert store.encoder() is None


def test_documents(store: Store) -> None:
    docs = [DocRecord(doc_id=d, title=d.upper(), text=f"full text of {d}", content_hash=f"h-{d}", chunk_ids=[f"{d}:0"], url=f"https://x/{d}") for d in "abc"]
    store.put_documents(docs)
    assert store.get_document("b") == docs[1]
    assert set(store.get_documents(["a", "c", "nope"])) == {"a", "c"}
    first, total = store.list_documents(0, 2)
    rest, _ = store.list_documents(2, 2)
    assert total == 3 and sorted(d.doc_id for d in first + rest) == ["a", "b", "c"]
    store.put_documents([DocRecord(doc_id="a", title="A2", text="new", content_hash="h2", chunk_ids=[])])
    assert store.get_document("a") is not None and store.get_document("a").title == "A2"  # type: ignore[union-attr]
    store.delete_document("a")
    store.delete_document("never-was")
    assert store.get_document("a") is None and store.list_documents(0, 10)[1] == 2


def test_journal_holds_the_pending_batch(store: Store) -> None:
    assert store.pending() == []
    store.mark_pending(["a", "b"])
    store.mark_pending(["c"])
    assert store.pending() == ["c"]
    store.clear_pending()
    assert store.pending() == []


def test_upgrade_gives_old_undated_chunks_the_marker_the_as_of_filter_needs(store: Store) -> None:
    fill(store)
    old = chunk("old", 0)
    meta = old.metadata()
    del meta["published_ts"]  # as an earlier version wrote it
    store.chunks.upsert(ids=[old.chunk_id], embeddings=[vectors(1, seed=9)[0].tolist()], documents=[old.text], metadatas=[meta])  # type: ignore[attr-defined]
    assert "old:0" not in {c for c, _ in store.query(vectors(1, seed=9)[0], 10, Where(as_of=20991231))}
    assert store.upgrade() == 1
    assert store.upgrade() == 0  # idempotent, and later opens skip the scan
    assert "old:0" in {c for c, _ in store.query(vectors(1, seed=9)[0], 10, Where(as_of=20991231))}
    assert store.get_chunks(["old:0"])[0] == old


def test_collections_lists_this_one_and_drop_removes_it(store: Store) -> None:
    fill(store)
    name = store.name  # type: ignore[attr-defined]
    assert name in store.collections() and not any("__" in n for n in store.collections())
    store.drop()
    assert name not in store.collections()
    store.drop()  # dropping again is not an error
