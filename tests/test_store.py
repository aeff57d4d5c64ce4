"""One conformance suite for the store, run against embedded Chroma and a real `chroma run` server."""

from __future__ import annotations

import datetime as dt
import uuid

import numpy as np
import pytest
from chromadb.api.client import SharedSystemClient

from qa_service.config import Settings
from qa_service.ingest.loaders import Article, Loaded, load_paths
from qa_service.schemas import Filters
from qa_service.service import QAService
from qa_service.store.base import Where

from .conftest import SEED_DOC, SEEDS, SHARED


@pytest.fixture(params=["embedded", pytest.param("server", marks=pytest.mark.server)])
def svc(request: pytest.FixtureRequest, tmp_path, embedder) -> QAService:  # type: ignore[no-untyped-def]
    if request.param == "server":
        url = request.getfixturevalue("chroma_server")
        s = Settings(chroma_url=url, collection=f"t-{uuid.uuid4().hex[:8]}", data_dir=tmp_path)
    else:
        s = Settings(data_dir=tmp_path / "store", collection="news")
    return QAService(s, embedder=embedder, load_llm=False)


def art(doc_id: str, text: str, **kw: str) -> Loaded:
    return Loaded(doc_id, Article(id=doc_id, title=kw.pop("title", doc_id), text=text, **kw))


def test_empty_store_searches_return_nothing(svc: QAService) -> None:
    assert svc.search("anything at all", 5) == []
    assert svc.search("anything at all", 5, Filters(source="Lusa")) == []


def test_ingest_reingest_update_delete(svc: QAService) -> None:
    first = svc.ingest(load_paths([SEEDS]))
    assert first.failed == 0 and first.added == 9 and first.chunks_written > 9
    chunks_before = svc.store.count_chunks()

    again = svc.ingest(load_paths([SEEDS]))
    assert (again.added, again.updated, again.unchanged, again.chunks_written) == (0, 0, 9, 0)
    assert svc.store.count_chunks() == chunks_before

    seed = svc.get_document(SEED_DOC)
    changed = seed.text.replace("Riyadh", "Jeddah")
    upd = svc.ingest([art(SEED_DOC, changed, title=seed.title)])
    assert upd.updated == 1 and upd.chunks_written == len(svc.store.chunk_ids_of(SEED_DOC))
    assert svc.store.count_chunks() == chunks_before  # same chunking, chunks replaced not added
    texts = " ".join(c.text for c in svc.store.get_chunks(svc.store.chunk_ids_of(SEED_DOC)))
    assert "Jeddah" in texts and "Riyadh" not in texts

    svc.delete(SEED_DOC)
    assert svc.store.chunk_ids_of(SEED_DOC) == []
    assert svc.store.get_document(SEED_DOC) is None
    assert all(r.doc_id != SEED_DOC for r in svc.search("Russia mediate US Iran", 10))


def test_chunk_metadata_and_offsets(svc: QAService) -> None:
    svc.ingest(load_paths([SEEDS]))
    doc = svc.store.get_document(SEED_DOC)
    assert doc is not None
    chunks = svc.store.get_chunks(doc.chunk_ids)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    for c in chunks:
        assert doc.text[c.start : c.end] == c.text
        assert c.doc_id == SEED_DOC and c.title == doc.title


def test_search_ranks_and_filters(svc: QAService) -> None:
    svc.ingest(load_paths([SEEDS]))
    svc.ingest([art("dated-1", "The mayor of Lisbon opened a new bridge over the Tagus river.", source="Lusa", published_at="2024-03-05"),
                art("dated-2", "The mayor of Porto opened a new bridge over the Douro river.", source="Lusa", published_at="2023-01-10")])
    top = svc.search("Who agreed to facilitate communication between the US and Iran?", 3)
    assert top[0].doc_id == SEED_DOC and "facilitate communication" in top[0].text
    lusa = svc.search("mayor opened a bridge", 5, Filters(source="Lusa"))
    assert {r.doc_id for r in lusa} == {"dated-1", "dated-2"}
    recent = svc.search("mayor opened a bridge", 5, Filters(published_after=dt.date(2024, 1, 1)))
    assert [r.doc_id for r in recent] == ["dated-1"]
    old = svc.search("mayor opened a bridge", 5, Filters(published_before=dt.date(2023, 12, 31), source="Lusa"))
    assert [r.doc_id for r in old] == ["dated-2"]
    only = svc.search("bridge", 5, Filters(doc_id="dated-2"))
    assert [r.doc_id for r in only] == ["dated-2"]


def test_nearest_ids_come_best_first_with_their_similarity(svc: QAService) -> None:
    svc.ingest(load_paths([SEEDS]))
    store = svc.store
    chunk = store.get_chunks(store.chunk_ids_of(SEED_DOC))[0]
    [own] = store.get_chunks_with_embeddings([chunk.chunk_id])
    assert own.embedding is not None
    near = store.query(own.embedding, 5, Where())
    assert near[0][0] == chunk.chunk_id and near[0][1] == pytest.approx(1.0, abs=1e-4)  # a chunk is nearest to itself
    sims = [s for _, s in near]
    assert sims == sorted(sims, reverse=True) and len(near) == 5
    assert {c for c, _ in store.query(own.embedding, 50, Where(doc_id=SEED_DOC))} == set(store.chunk_ids_of(SEED_DOC))


def test_listing_pages(svc: QAService) -> None:
    svc.ingest(load_paths([SEEDS]))
    page1 = svc.list_documents(0, 4)
    page2 = svc.list_documents(4, 10)
    assert page1.total == 9 and len(page1.documents) == 4 and len(page2.documents) == 5
    ids = [d.doc_id for d in page1.documents + page2.documents]
    assert len(set(ids)) == 9 and SEED_DOC in ids


def test_change_log_numbers_writes_and_prunes(svc: QAService, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every chunk write is one numbered entry (additions after the write, removals before it); readers that fall
    behind the kept window, or a reset collection, get None and compare ids instead."""
    from qa_service.store.base import log_position

    store = svc.store
    assert store.generation() == "" and log_position(store.generation()) is None
    svc.ingest([art("a", "Envoys met in Muscat on Sunday."), art("b", "Rain flooded Lisbon.")])
    first = log_position(store.generation())
    assert first is not None
    seq, epoch = first
    ids_a = store.chunk_ids_of("a")
    svc.delete("a")
    after = log_position(store.generation())
    assert after == (seq + 1, epoch)
    entries = store.changes(0, seq + 1)
    assert entries is not None and len(entries) == seq + 1
    assert entries[-1] == ([], ids_a)
    assert set(ids_a) <= {c for added, _ in entries for c in added}
    assert store.changes(seq + 1, seq + 1) == []

    monkeypatch.setattr("qa_service.store.chroma.LOG_KEEP", 2)
    for i in range(3):
        svc.ingest([art("b", f"Rain flooded Lisbon, day {i}.")])  # an edit: new chunks logged, old ones logged gone
    latest = log_position(store.generation())
    assert latest is not None and latest[1] == epoch
    assert store.changes(latest[0] - 2, latest[0]) is not None
    assert store.changes(0, latest[0]) is None  # pruned

    store.reset()
    svc.ingest([art("c", "A new ship was named.")])
    restarted = log_position(store.generation())
    assert restarted is not None and restarted[1] != epoch


def test_records_written_with_the_text_in_documents_still_read(svc: QAService) -> None:
    """Stores written before the text moved to the record's metadata keep working: re-ingest finds them unchanged."""
    svc.ingest([art("old", "Heavy rain flooded the centre of Lisbon on Monday.", title="Storm")])
    rec = svc.store.get_document("old")
    assert rec is not None and rec.text == "Heavy rain flooded the centre of Lisbon on Monday."
    meta = svc.store._doc_meta(rec)
    del meta["text"]
    svc.store.docs.upsert(ids=["old"], embeddings=[[1.0]], documents=[rec.text], metadatas=[meta])  # the earlier layout
    assert svc.get_document("old").text == rec.text
    again = svc.ingest([art("old", rec.text, title="Storm")])
    assert (again.unchanged, again.chunks_written) == (1, 0)


@pytest.mark.slow
def test_an_unreadable_chunk_index_is_made_again_from_the_records_on_open(tmp_path, embedder) -> None:  # type: ignore[no-untyped-def]
    """An embedded Chroma killed mid-write can leave a vector index its compactor cannot load, and then every read of
    the chunks fails (the SIGKILL test met it: chroma-core/chroma#7678). Here the index's metadata file is torn by
    hand, after enough chunks that Chroma has written it (its sync threshold is 1,000). On open the service finds the
    chunks unreadable and makes them again from the records, which hold each document's text."""
    settings = Settings(data_dir=tmp_path / "store", collection="news")
    svc = QAService(settings, embedder=embedder, load_llm=False)
    svc.ingest(load_paths([SHARED / "eval" / "qamr-wikinews" / "corpus.jsonl"]))
    count = svc.store.count_chunks()
    query = svc.search("asylum seekers towed back to Rote Island", 3)[0].doc_id
    svc.close()
    assert count > 1000
    torn = [p for p in (tmp_path / "store").glob("*/index_metadata.pickle")]
    assert len(torn) == 1  # the chunks' index; records and journal hold too few items to have one
    torn[0].write_bytes(b"torn")
    SharedSystemClient.clear_system_cache()  # a restart: this process's Chroma drops the index it holds in memory

    reopened = QAService(settings, embedder=embedder, load_llm=False)
    assert reopened.rebuilt_chunks == count and reopened.store.count_chunks() == count
    docs, total = reopened.store.list_documents(0, 1000)
    assert total == len(docs) and all(sorted(reopened.store.chunk_ids_of(d.doc_id)) == sorted(d.chunk_ids) for d in docs)
    assert reopened.search("asylum seekers towed back to Rote Island", 3)[0].doc_id == query
    reopened.close()
    again = QAService(settings, embedder=embedder, load_llm=False)
    assert again.rebuilt_chunks == 0 and again.store.count_chunks() == count
    again.store.reset_chunks()  # a rebuild killed after it dropped the index: the next open starts it again
    again.close()
    resumed = QAService(settings, embedder=embedder, load_llm=False)
    assert resumed.rebuilt_chunks == count and resumed.store.count_chunks() == count
    resumed.close()


def test_a_store_made_by_another_encoder_is_embedded_again_or_refused(tmp_path, embedder) -> None:  # type: ignore[no-untyped-def]
    """Vectors of two encoders do not compare: a query from one ranks the other's chunks by noise (or, with another
    dimension, the backend fails). The store records which encoder made its vectors; opening it with another embeds
    every chunk again from the records, or, if so configured, refuses to open it."""
    from qa_service.embedding import SentenceTransformerEmbedder
    from qa_service.errors import QAError

    settings = Settings(data_dir=tmp_path / "store", collection="news")
    first = QAService(settings, embedder=embedder, load_llm=False)
    first.ingest(load_paths([SEEDS]))
    count = first.store.count_chunks()
    assert count > 0 and first.store.encoder() == embedder.identity == "all-MiniLM-L6-v2 int8r7 384d"

    fp32 = SentenceTransformerEmbedder("all-MiniLM-L6-v2", backend="onnx")
    assert fp32.identity == "all-MiniLM-L6-v2 fp32 384d"
    with pytest.raises(QAError) as refused:
        QAService(settings.model_copy(update={"encoder_change": "refuse"}), embedder=fp32, load_llm=False)
    assert refused.value.code == "encoder_mismatch" and refused.value.status == 409
    assert first.store.encoder() == embedder.identity and first.store.count_chunks() == count  # nothing touched

    second = QAService(settings, embedder=fp32, load_llm=False)
    assert second.reembedded_chunks == count and second.store.count_chunks() == count
    assert second.store.encoder() == fp32.identity
    ids = second.store.chunk_ids()
    stored = {h.chunk.chunk_id: h.embedding for h in second.store.get_chunks_with_embeddings(ids)}
    texts = {c.chunk_id: c.text for c in second.store.get_chunks(ids)}
    for cid in ids:  # every vector is now the fp32 encoder's
        assert np.allclose(stored[cid], fp32.embed([texts[cid]])[0], atol=1e-5)
    assert QAService(settings, embedder=fp32, load_llm=False).reembedded_chunks == 0

    # the first process still encodes with int8: its writes would mix two encoders' vectors in one index
    with pytest.raises(QAError) as mixed:
        first.ingest([art("late", "A late article about the Riyadh talks.")])
    assert mixed.value.code == "encoder_mismatch"
    with pytest.raises(QAError) as stale:  # and its questions would be int8 vectors searched among fp32 ones
        first.search("Where did the envoys meet?")
    assert stale.value.code == "encoder_mismatch" and stale.value.status == 409
    assert [r.chunk_id for r in second.search("Where did the envoys meet?")]

    # a store written before stores recorded their encoder (with 8-bit weights then) is embedded again once
    second.store.journal.delete(ids=["encoder"])  # type: ignore[attr-defined]
    legacy = QAService(settings, embedder=embedder, load_llm=False)
    assert legacy.reembedded_chunks == count and legacy.store.encoder() == embedder.identity
    assert QAService(settings, embedder=embedder, load_llm=False).reembedded_chunks == 0
