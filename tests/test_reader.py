"""The committed reader: spans on known sentences, batch independence, the no-answer path, rerank and evidence,
the extractive mode through the API, and the multiple-choice scoring of the eval."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from qa_service.api.app import create_app
from qa_service.config import DEFAULT_READER, Settings
from qa_service.eval.metrics import choose
from qa_service.ingest.loaders import load_paths
from qa_service.reader.onnx_reader import OnnxReader, Span
from qa_service.reading import Read, evidence, rerank
from qa_service.retrieval import Retrieved
from qa_service.service import QAService
from qa_service.store.base import ChunkRecord
from qa_service.text import sentences

from .conftest import SEED_DOC, SEEDS

LISBON = "Heavy rain flooded the centre of Lisbon on Monday, the city's mayor Carlos Moedas said. Shares in Porto fell 3% after the announcement."
OTHER = [
    "The orchestra will tour Japan and South Korea next spring, playing twelve concerts in six cities.",
    "A new bridge over the river opened to traffic on Friday after four years of construction work.",
    LISBON,
    "Scientists found that the glacier lost a fifth of its mass between 2000 and 2020, the report said.",
]


@pytest.fixture(scope="module")
def reader() -> OnnxReader:
    return OnnxReader(DEFAULT_READER)


@pytest.mark.parametrize(
    ("question", "answer"),
    [
        ("Which city was flooded by heavy rain?", "Lisbon"),
        ("Who is the mayor of Lisbon?", "Carlos Moedas"),
        ("By how much did shares in Porto fall?", "3%"),
    ],
)
def test_reader_finds_the_span_of_a_known_sentence(reader: OnnxReader, question: str, answer: str) -> None:
    span = reader.read(question, [LISBON])[0]
    assert answer in span.text and len(span.text) <= len(answer) + 12, span
    assert LISBON[span.start : span.end] == span.text and span.score > 0
    assert 0.5 < reader.confidence(span.score) <= 1


def test_reader_abstains_on_an_unrelated_passage(reader: OnnxReader) -> None:
    span = reader.read("Who won the 2019 Lisbon marathon?", [OTHER[0]])[0]
    assert span.score < 0 and reader.confidence(span.score) < 0.5


def test_a_passage_reads_the_same_alone_and_among_others(reader: OnnxReader) -> None:
    """Each window runs alone, so what else is read (and on how many threads) cannot change a passage's span or
    score: bit-identical, not just close."""
    question = "Which city was flooded by heavy rain?"
    alone = reader.read(question, [LISBON])[0]
    many = reader.read(question, OTHER + OTHER[::-1])
    single_thread = OnnxReader(DEFAULT_READER, threads=1).read(question, OTHER)
    for got in (many[2], many[5], single_thread[2]):
        assert (got.start, got.end, got.text, got.score) == (alone.start, alone.end, alone.text, alone.score)


def test_a_long_question_is_cut_not_refused(reader: OnnxReader) -> None:
    span = reader.read("Which city " + "really " * 300 + "was flooded?", [LISBON])[0]
    assert span.text  # the window keeps room for the passage


def test_score_span_agrees_with_read(reader: OnnxReader) -> None:
    question = "Which city was flooded by heavy rain?"
    span = reader.read(question, [LISBON])[0]
    assert reader.score_span(question, LISBON, span.start, span.end) == pytest.approx(span.score)
    assert reader.score_span(question, LISBON, LISBON.index("Porto"), LISBON.index("Porto") + 5) < span.score


@pytest.mark.parametrize("probability", [0.05, 0.4, 0.9])
def test_a_sureness_probability_maps_back_to_the_score_that_gives_it(reader: OnnxReader, probability: float) -> None:
    score = reader.score_for(probability)
    assert reader.confidence(score) == pytest.approx(probability)
    assert reader.confidence(score - 0.01) < probability < reader.confidence(score + 0.01)
    assert reader.score_for(0.0) == float("-inf") and reader.score_for(1.0) == float("inf")


def _read(chunk_id: str, text: str, rank: int, score: float, start: int = 0, end: int = 5) -> Read:
    chunk = ChunkRecord(chunk_id=chunk_id, doc_id=chunk_id, text=text, index=0, start=0, end=len(text), title=chunk_id)
    return Read(Retrieved(chunk, 0.0, 0.0, np.zeros(3, dtype=np.float32)), Span(0, start, end, text[start:end], score), rank)


@pytest.mark.parametrize(("question", "holds"), [("Who is the mayor of Lisbon?", 0), ("By how much did shares in Porto fall?", 1)])
def test_range_scores_point_at_the_answers_sentence(reader: OnnxReader, question: str, holds: int) -> None:
    ranges = sentences(LISBON)
    (scores,) = reader.range_scores(question, [LISBON], [ranges])
    assert reader.range_scores(question, [OTHER[0], LISBON], [[(0, len(OTHER[0]))], ranges])[1] == scores  # alone or among others
    assert scores[holds] > 6 > 0 > scores[1 - holds]
    assert scores[holds] == pytest.approx(reader.read(question, [LISBON])[0].score)


def test_rerank_fuses_retrieval_and_reader_orders() -> None:
    reads = [_read("a", "x" * 10, 0, -3.0), _read("b", "y" * 10, 1, 1.0), _read("c", "z" * 10, 2, 5.0)]
    assert [r.hit.chunk.chunk_id for r in rerank(reads, reader_weight=0.0, rrf_k=5)] == ["a", "b", "c"]
    assert [r.hit.chunk.chunk_id for r in rerank(reads, reader_weight=10.0, rrf_k=5)] == ["c", "b", "a"]


def test_evidence_is_the_span_sentence_and_its_neighbours() -> None:
    text = "The weather was calm. The mayor is Carlos Moedas. He took office in 2021. Porto is to the north."
    at = text.index("Carlos")
    far = _read("far", "Nothing here at all. Really nothing.", 0, -1.0)
    near = _read("near", text, 1, 4.0, at, at + len("Carlos Moedas"))
    shown = evidence([far, near], budget=40)
    assert [p.hit.chunk.chunk_id for p in shown] == ["near"]  # a read with no span above no-answer is left out
    assert "The mayor is Carlos Moedas." in shown[0].text and shown[0].n == 1
    assert all(text[s:e] in shown[0].text for s, e in shown[0].spans)
    tight = evidence([near], budget=12)
    assert tight[0].text == "The mayor is Carlos Moedas."


def test_choose_maps_an_answer_to_one_choice() -> None:
    choices = ["Pope John Paul II", "Pope Paul VI", "Pope Pius XII", "Pope Benedict XVI"]
    assert choose("Benedict XVI", "Pope Benedict XVI was laid to rest [1].", choices) == 3
    assert choose(None, "The funeral was for Pope Benedict XVI [2].", choices) == 3
    assert choose("600 years", None, ["150 years", "250 years", "400 years", "600 years"]) == 3
    assert choose("Pope", None, choices) is None  # a tie is wrong
    assert choose(None, None, choices) is None


@pytest.fixture(scope="module")
def extractive_client(tmp_path_factory: pytest.TempPathFactory, embedder):  # type: ignore[no-untyped-def]
    s = Settings(data_dir=tmp_path_factory.mktemp("extractive") / "store", answer_mode="extractive", reader=True)
    svc = QAService(s, embedder=embedder, load_llm=False)
    svc.ingest(load_paths([SEEDS]))
    with TestClient(create_app(s, service=svc)) as c:
        yield c


def test_extractive_mode_through_the_api(extractive_client: TestClient) -> None:
    r = extractive_client.post("/v1/ask", json={"question": "Who agreed to facilitate communication between the US and Iran?", "mode": "extractive"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["mode"] == "extractive" and body["refused"] is False
    assert "Russia" in body["short_answer"] and body["answer"].endswith("[1]")
    assert 0.5 < body["confidence"] <= 1
    span, cite = body["span"], body["citations"][0]
    assert cite["n"] == 1 and cite["doc_id"] == span["doc_id"] == SEED_DOC
    doc = extractive_client.get(f"/v1/documents/{SEED_DOC}").json()["text"]
    assert doc[span["start"] : span["end"]] == span["text"] and span["text"] in body["answer"]
    assert body["timings"]["generate_ms"] < 50  # no LLM


def test_extractive_mode_refuses_what_the_articles_do_not_say(extractive_client: TestClient) -> None:
    body = extractive_client.post("/v1/ask", json={"question": "What is the population of Tehran?"}).json()
    assert body["refused"] is True and body["citations"] == [] and body["short_answer"] is None


def test_rerank_search_through_the_api(extractive_client: TestClient) -> None:
    r = extractive_client.post("/v1/search", json={"query": "Where did the envoys meet?", "top_k": 3, "rerank": True})
    assert r.status_code == 200 and len(r.json()["results"]) == 3


def test_an_unknown_mode_is_a_clear_error(extractive_client: TestClient) -> None:
    r = extractive_client.post("/v1/ask", json={"question": "Who?", "mode": "abstractive"})
    assert r.status_code == 422 and set(r.json()["error"]) == {"code", "message"}


def test_reader_features_on_a_server_without_the_reader_are_a_409(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    s = Settings(data_dir=tmp_path / "s", sentence_reader_weight=0, wide_context_tokens=0)
    assert not s.loads_reader
    with TestClient(create_app(s, service=QAService(s, embedder=embedder, load_llm=False))) as client:
        for path, body in (("/v1/search", {"query": "Where?", "rerank": True}), ("/v1/ask", {"question": "Where?", "mode": "extractive"})):
            r = client.post(path, json=body)
            assert r.status_code == 409, r.text
            assert r.json()["error"]["code"] == "not_enabled" and "QA_READER" in r.json()["error"]["message"]


def test_a_missing_reader_model_is_a_config_error(tmp_path: Path, embedder) -> None:  # type: ignore[no-untyped-def]
    from qa_service.errors import ConfigError

    with pytest.raises(ConfigError, match="reader"):
        QAService(Settings(data_dir=tmp_path / "s", reader_model=tmp_path / "none", reader=True), embedder=embedder, load_llm=False)
