"""Lexical matching, hybrid ranking and passage selection, on the real embedder and an embedded Chroma."""

from __future__ import annotations

import pytest

from qa_service.config import Settings
from qa_service.embedding import SentenceTransformerEmbedder
from qa_service.generation import format_passages, select_passages
from qa_service.ingest.chunking import count_tokens
from qa_service.ingest.loaders import Article, Loaded
from qa_service.service import QAService
from qa_service.store.base import Where
from qa_service.store.lexical import tokenize

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


def test_term_weights_are_idf(svc: QAService) -> None:
    w = svc.lexical.term_weights({"pueyo", "offici", "unseenword"})  # "officials" is in two of the four
    assert w["unseenword"] > w["pueyo"] > w["offici"] > 0
