"""Lexical matching, hybrid ranking and passage selection, on the real embedder and an embedded Chroma."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest

from qa_service.config import Settings
from qa_service.embedding import SentenceTransformerEmbedder
from qa_service.ingest.chunking import count_tokens
from qa_service.ingest.loaders import Article, Loaded
from qa_service.passages import ReaderHelp, format_passages, select_passages
from qa_service.service import QAService
from qa_service.store.base import Where
from qa_service.text import question_parts, tokenize

DOCS = {
    "skiing": (
        "Spain finished fourth in the women's giant slalom on Saturday. Because teammate Úrsula Pueyo had a faster "
        "time of 20.32, Carpanedo's time was not used in tabulating Spain's overall ranking. The race was held in "
        "Panorama, Canada."
    ),
    "games": (
        "The World Games closing ceremony was attended by the presidents of two sporting federations. When Angelino "
        "Garzón apologised for the absent president, the public exploded in whistles. The games drew 4,000 athletes."
    ),
    "talks": (
        "Ministers met in Riyadh to discuss a ceasefire. Following those talks, Lavrov relayed details of the request "
        "to Iranian officials, including his counterpart Abbas Araghchi. The ministers will meet again in March."
    ),
    "names": (
        "A name was chosen for the first new ship of the line. The first name on the list was rejected by the board. "
        "Officials said the last name considered would be announced in the spring."
    ),
}


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory, embedder: SentenceTransformerEmbedder) -> QAService:
    s = Settings(data_dir=tmp_path_factory.mktemp("retrieval") / "store")
    service = QAService(s, embedder=embedder, load_llm=False)
    service.ingest([Loaded(k, Article(id=k, title=k.title(), text=v)) for k, v in DOCS.items()])
    return service


def test_tokenize_folds_accents_stems_and_drops_stopwords() -> None:
    assert tokenize("Úrsula Pueyo’s RUNNING times") == ["ursula", "pueyo", "run", "time"]
    assert tokenize("Garzón apologised") == tokenize("garzon apologised")
    assert tokenize("the of and is a") == []


@pytest.mark.parametrize(
    ("question", "doc"),
    [("What time did Ursula Pueyo have?", "skiing"), ("Why did Garzon apologise?", "games")],
)
def test_unaccented_name_finds_accented_article_first(svc: QAService, question: str, doc: str) -> None:
    hybrid = svc.retriever.search(question, 4, Where())
    assert hybrid[0].chunk.doc_id == doc
    lexical = svc.lexical.query(question, 4, Where())
    assert lexical[0].chunk.doc_id == doc


def test_selection_respects_budget_and_keeps_to_retrieved_chunks(svc: QAService) -> None:
    question = "Who is Iran's foreign minister?"
    hits = svc.retriever.search(question, 4, Where())
    for budget in (40, 80, 120):
        passages = select_passages(question, hits, svc.embedder, budget, svc.lexical.term_weights)
        assert passages
        assert count_tokens(format_passages(passages)) <= budget + len(passages)  # +1 per sentence join
        ids = {h.chunk.chunk_id for h in hits}
        assert all(p.hit.chunk.chunk_id in ids for p in passages)
        assert [p.n for p in passages] == list(range(1, len(passages) + 1))
        for p in passages:
            for s, e in p.spans:
                assert p.hit.chunk.start <= s < e <= p.hit.chunk.end


def test_selection_prefers_the_rare_term_and_reaches_the_demonym(svc: QAService) -> None:
    """'iran' matches 'Iranian' (prefix), and the sentence naming the counterpart wins a place."""
    question = "Who is Iran's foreign counterpart Lavrov met?"
    hits = svc.retriever.search(question, 4, Where())
    passages = select_passages(question, hits, svc.embedder, 60, svc.lexical.term_weights)
    assert "Araghchi" in passages[0].text
    assert passages[0].hit.chunk.doc_id == "talks"


def test_weak_chunks_are_left_out_but_the_top_two_stay(svc: QAService) -> None:
    question = "What was Úrsula Pueyo's time?"
    hits = svc.retriever.search(question, 4, Where())
    passages = select_passages(question, hits, svc.embedder, 70, svc.lexical.term_weights)
    shown = [p.hit.chunk.chunk_id for p in passages]
    assert hits[0].chunk.chunk_id in shown and "20.32" in passages[0].text
    assert len(passages) < len(hits)  # the budget goes to the best sentences, not one per chunk


@pytest.mark.parametrize(
    ("question", "parts"),
    [
        ("Who agreed to mediate, and where did the envoys meet?", ["Who agreed to mediate", "where did the envoys meet?"]),
        ("Who won? When was the final played?", ["Who won", "When was the final played?"]),
        ("Who said what and when?", ["Who said what and when?"]),
        ("What did the ministers and the envoys agree?", ["What did the ministers and the envoys agree?"]),
    ],
)
def test_question_parts_split_only_at_a_new_wh_question(question: str, parts: list[str]) -> None:
    assert question_parts(question) == parts


@pytest.mark.parametrize(
    ("question", "budget", "answers"),
    [
        ("Who relayed details of the request to Iran, and when will the ministers meet again?", 60, ("Lavrov", "March")),
        ("Where did the ministers meet, and how many athletes did the games draw?", 50, ("Riyadh", "4,000")),
    ],
)
def test_each_part_of_a_two_part_question_gets_its_sentence(svc: QAService, question: str, budget: int, answers: tuple[str, str]) -> None:
    """Scored as one question, the budget goes to the second best chunk's top sentence or to the part with more
    names, and one part's answer is left out; each part's best sentence is taken first."""
    hits = svc.retriever.search(question, 4, Where())
    text = format_passages(select_passages(question, hits, svc.embedder, budget, svc.lexical.term_weights))
    assert all(a in text for a in answers)


def test_the_reader_moves_the_choice_and_widens_the_budget_when_unsure(svc: QAService) -> None:
    """The reader's margins come from a stand-in here (the real reader's are tested in test_reader.py): sure of
    one sentence, it wins the tight budget; sure of none, the wide budget is spent."""
    question = "Who is Iran's foreign minister?"
    hits = svc.retriever.search(question, 4, Where())

    def sure_of(words: str) -> ReaderHelp:
        return ReaderHelp(lambda q, texts, ranges: [[12.0 if words in t[a:b] else -12.0 for a, b in r] for t, r in zip(texts, ranges, strict=True)], 1.0, 200, 6.0)

    plain = format_passages(select_passages(question, hits, svc.embedder, 40, svc.lexical.term_weights))
    assert "met in Riyadh" not in plain
    helped = format_passages(select_passages(question, hits, svc.embedder, 40, svc.lexical.term_weights, sure_of("met in Riyadh")))
    assert "met in Riyadh" in helped and count_tokens(helped) <= 40 + 4
    unsure = ReaderHelp(lambda q, texts, ranges: [[0.0] * len(r) for r in ranges], 0.4, 200, 6.0)
    wide = format_passages(select_passages(question, hits, svc.embedder, 40, svc.lexical.term_weights, unsure))
    assert 60 < count_tokens(wide) <= 200 + 12


def test_term_weights_are_idf(svc: QAService) -> None:
    w = svc.lexical.term_weights({"pueyo", "offici", "unseenword"})  # "officials" is in two of the four
    assert w["unseenword"] > w["pueyo"] > w["offici"] > 0


def test_bm25_scores_match_bm25s_lucene(svc: QAService) -> None:
    """Our incremental postings score exactly as bm25s (Lucene variant) does over the same tokens."""
    import bm25s

    svc.lexical.sync()
    chunks = list(svc.store.iter_chunks())
    ref = bm25s.BM25(k1=svc.lexical.k1, b=svc.lexical.b)
    ref.index([tokenize(c.text) for c in chunks], show_progress=False)
    for question in ("Why were the ministers in Riyadh?", "Ursula Pueyo time ranking", "first name of the ship"):
        tokens = [t for t in tokenize(question) if t in ref.vocab_dict]
        expected = np.asarray(ref.get_scores(tokens))
        got = {h.chunk.chunk_id: h.score for h in svc.lexical.query(question, len(chunks), Where())}
        for c, e in zip(chunks, expected, strict=True):
            assert got.get(c.chunk_id, 0.0) == pytest.approx(e * (svc.lexical.k1 + 1), rel=1e-4, abs=1e-6)


def test_bm25_follows_writes_incrementally_and_persists(
    tmp_path: Path, embedder: SentenceTransformerEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = Settings(data_dir=tmp_path / "store")
    a = QAService(s, embedder=embedder, load_llm=False)
    a.ingest([Loaded(k, Article(id=k, title=k, text=v)) for k, v in DOCS.items()])
    assert a.lexical.query("Araghchi", 3, Where())[0].chunk.doc_id == "talks"
    live = len(a.lexical)
    monkeypatch.setattr("qa_service.store.lexical.SAVE_FRACTION", 10.0)  # four articles: every edit is "large"
    # an edit keeps the chunk count but changes the text: the old words go, the new ones come
    a.ingest([Loaded("talks", Article(id="talks", title="talks", text="Envoys met in Muscat to discuss sanctions relief."))])
    assert a.lexical.query("Araghchi", 3, Where()) == []
    assert a.lexical.query("Muscat envoys", 3, Where())[0].chunk.doc_id == "talks"
    assert len(a.lexical) == live
    a.delete("games")
    assert a.lexical.query("Garzon", 3, Where()) == []
    assert len(a.lexical) == live - 1
    path = s.data_dir / "lexical" / f"{s.collection}.npz"
    assert path.exists()  # written by the first build; the small writes since are not in it yet
    # another service opening the stale file diffs ids and agrees with the writer
    stale = QAService(s, embedder=embedder, load_llm=False)
    assert stale.lexical._generation != a.store.generation()
    a.close()  # shutdown flushes the index file
    b = QAService(s, embedder=embedder, load_llm=False)
    assert len(b.lexical) == live - 1 and b.lexical._generation == a.store.generation()
    for q in ("Muscat", "Pueyo", "ship name", "Araghchi Garzon"):
        expected = [(h.chunk.chunk_id, round(h.score, 4)) for h in a.lexical.query(q, 5, Where())]
        assert [(h.chunk.chunk_id, round(h.score, 4)) for h in b.lexical.query(q, 5, Where())] == expected
        assert [(h.chunk.chunk_id, round(h.score, 4)) for h in stale.lexical.query(q, 5, Where())] == expected
    # filters work on the index's own columns
    assert [h.chunk.doc_id for h in b.lexical.query("name Pueyo", 5, Where(doc_id="names"))] == ["names"]
    assert b.lexical.query("Pueyo", 5, Where(source="nowhere")) == []


@pytest.mark.server
def test_bm25_of_another_process_sees_writes(chroma_server: str, tmp_path: Path, embedder: SentenceTransformerEmbedder) -> None:
    """Two API workers on one Chroma server: a write through one is searchable through the other."""
    s = Settings(chroma_url=chroma_server, collection=f"t-{uuid.uuid4().hex[:8]}", data_dir=tmp_path)
    writer = QAService(s, embedder=embedder, load_llm=False)
    reader = QAService(s.model_copy(update={"data_dir": tmp_path / "other"}), embedder=embedder, load_llm=False)
    writer.ingest([Loaded("skiing", Article(id="skiing", title="skiing", text=DOCS["skiing"]))])
    assert reader.retriever.search("Pueyo", 3, Where())[0].chunk.doc_id == "skiing"
    writer.ingest([Loaded("skiing", Article(id="skiing", title="skiing", text="Pueyo withdrew from the slalom in Zermatt."))])
    assert reader.lexical.query("Carpanedo", 3, Where()) == []
    assert reader.lexical.query("Zermatt", 3, Where())[0].chunk.doc_id == "skiing"


def test_bm25_follows_the_change_log_without_listing_ids(tmp_path: Path, embedder: SentenceTransformerEmbedder, monkeypatch: pytest.MonkeyPatch) -> None:
    """After the first build a reader applies only the logged entries, also across a restart; a write the log
    never saw (a crash between a write and its entry) is caught by the count check on load."""
    s = Settings(data_dir=tmp_path / "store")
    writer = QAService(s, embedder=embedder, load_llm=False)
    writer.ingest([Loaded(k, Article(id=k, title=k, text=v)) for k, v in DOCS.items()])
    reader = QAService(s, embedder=embedder, load_llm=False)
    assert reader.lexical.query("Araghchi", 3, Where())[0].chunk.doc_id == "talks"  # first build: a full comparison
    listed: list[int] = []
    real = type(writer.store).chunk_ids

    def counting(self, batch: int = 20_000):  # type: ignore[no-untyped-def]
        listed.append(1)
        return real(self, batch)

    monkeypatch.setattr(type(writer.store), "chunk_ids", counting)
    writer.ingest([Loaded("talks", Article(id="talks", title="talks", text="Envoys met in Muscat to discuss sanctions relief."))])
    writer.delete("games")
    assert reader.lexical.query("Araghchi", 3, Where()) == []
    assert reader.lexical.query("Muscat envoys", 3, Where())[0].chunk.doc_id == "talks"
    assert reader.lexical.query("Garzon", 3, Where()) == []
    assert len(reader.lexical) == writer.store.count_chunks()
    reader.close()  # saves the index file at the current generation
    writer.ingest([Loaded("late", Article(id="late", title="late", text="A late bulletin from the harbour at Setubal."))])
    restarted = QAService(s, embedder=embedder, load_llm=False)
    assert restarted.lexical.query("Setubal harbour", 3, Where())[0].chunk.doc_id == "late"
    assert listed == [], "the log was enough: no reader listed every chunk id"

    # a chunk written behind the log's back: the count on the next load disagrees, so ids are compared
    restarted.close()
    ghost = writer.store.get_chunks(writer.store.chunk_ids_of("late"))[0]
    writer.store.chunks.upsert(ids=["ghost#1"], embeddings=[embedder.embed_query("x").tolist()], documents=["Zanzibar ferry timetable"],
                               metadatas=[{**ghost.metadata(), "doc_id": "ghost"}])
    again = QAService(s, embedder=embedder, load_llm=False)
    assert again.lexical.query("Zanzibar ferry", 3, Where())[0].chunk.chunk_id == "ghost#1"
    assert listed == [1]


def test_a_filtered_dense_query_matches_the_stores_filter_both_ways(tmp_path: Path) -> None:
    """The retriever post-filters an unfiltered query with the BM25 index's columns (Chroma's filter is slow); its
    ids must be the store's own filtered answer, for a loose filter (post-filtered) and a narrow one (fallback)."""
    from qa_service.retrieval import OVERFETCH, Retriever
    from qa_service.store import open_store
    from qa_service.store.base import ChunkRecord
    from qa_service.store.lexical import LexicalIndex

    settings = Settings(data_dir=tmp_path, collection=f"f-{uuid.uuid4().hex[:8]}")
    store = open_store(settings)
    rng = np.random.default_rng(7)
    n = 240
    chunks = [
        ChunkRecord(
            chunk_id=f"d{i}:0", doc_id=f"d{i}", text=f"chunk {i}", index=0, start=0, end=8, title=f"D{i}",
            source="Rare" if i % 40 == 0 else "Wire", published_at=None if i % 7 == 0 else f"2023-{1 + i % 12:02d}-{1 + i % 28:02d}",
        )
        for i in range(n)
    ]
    vecs = rng.normal(size=(n, 16)).astype(np.float32)
    store.upsert_chunks(chunks, vecs / np.linalg.norm(vecs, axis=1, keepdims=True))
    lexical = LexicalIndex(store)
    retriever = Retriever(store, None, lexical, settings)  # type: ignore[arg-type]  # _dense needs no encoder
    calls: list[Where] = []
    query = store.query
    store.query = lambda q, k, where: calls.append(where) or query(q, k, where)  # type: ignore[method-assign]
    for _ in range(5):
        q = rng.normal(size=16).astype(np.float32)
        q /= np.linalg.norm(q)
        for where, falls_back in [(Where(as_of=20231115), False), (Where(after=20230301, before=20231231), False), (Where(source="Rare"), True)]:
            calls.clear()
            got = retriever._dense(q, 30, where)
            assert [cid for cid, _ in got] == [cid for cid, _ in query(q, 30, where)], where
            assert (where in calls) == falls_back  # a loose filter never asks the store to filter
            assert calls[0] == Where() and OVERFETCH * 30 <= n
