"""The default path's confidence and span: the LLM's short answer found in its cited chunk, scored by the reader,
calibrated (models/answer_calibration.json); and the eval's calibration figures.

The replies are scripted (what is under test is what the service does with a reply); retrieval, the reader and the
committed calibration are real.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from qa_service.citations import Verdict
from qa_service.compose import STALE_CAP_YEARS, AnswerCalibration, answer_logprob, calibrated, staleness
from qa_service.config import DEFAULT_ANSWER_CALIBRATION, Settings
from qa_service.embedding import SentenceTransformerEmbedder
from qa_service.errors import ConfigError
from qa_service.eval.metrics import calibration
from qa_service.eval.runner import score_one, summarise
from qa_service.ingest.loaders import Article, Loaded
from qa_service.llm.base import Message, Piece
from qa_service.llm.local import _deltas
from qa_service.service import QAService
from tests.test_retry import REPORT, DecliningLLM


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, embedder: SentenceTransformerEmbedder) -> tuple[QAService, DecliningLLM]:
    llm = DecliningLLM()
    settings = Settings(data_dir=tmp_path_factory.mktemp("confidence") / "store")
    svc = QAService(settings, embedder=embedder, llm=llm, load_llm=False)
    svc.ingest([Loaded("braga", Article(id="braga", title="Braga tram", text=REPORT))])
    return svc, llm


def test_a_short_answer_gets_its_span_and_a_calibrated_confidence(service: tuple[QAService, DecliningLLM]) -> None:
    svc, llm = service
    llm.replies = ["Answer: The mayor said the tram would carry 40,000 passengers a day [1].\nSHORT: 40,000"]
    r = svc.ask("How many passengers will the tram carry a day?")
    assert not r.refused and r.short_answer == "40,000" and r.span is not None
    assert r.span.doc_id == "braga" and REPORT[r.span.start : r.span.end] == "40,000" == r.span.text
    cal = AnswerCalibration.load(DEFAULT_ANSWER_CALIBRATION)
    assert r.confidence is not None and 0 < r.confidence < 1
    assert r.confidence > cal(None)  # the reader picks this span: more than an answer it cannot find


def test_the_reader_gives_less_confidence_to_a_span_it_would_not_pick(service: tuple[QAService, DecliningLLM]) -> None:
    svc, llm = service
    llm.replies = [
        "Answer: The mayor said the tram would carry 40,000 passengers a day [1].\nSHORT: 40,000",
        "Answer: The tram would carry 12,000 passengers a day [1].\nSHORT: 12,000",
    ]
    right = svc.ask("How many passengers will the tram carry a day?")
    wrong = svc.ask("How many passengers will the tram carry a day?")
    assert not wrong.refused and wrong.span is not None and wrong.span.text == "12,000"
    assert right.confidence is not None and wrong.confidence is not None and wrong.confidence < right.confidence


def test_a_short_answer_not_in_its_passage_has_no_span(service: tuple[QAService, DecliningLLM]) -> None:
    svc, _ = service
    question = "How many passengers will the tram carry a day?"
    plan = svc._plan(question, 5, None, "generative", svc._frame(question, None))
    assert svc.reader is not None and svc.answer_calibration is not None
    verdict = Verdict(answer="The tram would carry forty thousand passengers a day [1].", short="forty thousand", cited=[1])
    c = calibrated(verdict, plan.passages, svc.reader, svc.answer_calibration, question)
    assert c.span is None and c.confidence == round(svc.answer_calibration(None), 4)
    no_short = calibrated(Verdict(answer=verdict.answer, short=None, cited=[1]), plan.passages, svc.reader, svc.answer_calibration, question)
    assert no_short.span is None and no_short.confidence == c.confidence


def test_a_refusal_has_no_confidence(service: tuple[QAService, DecliningLLM]) -> None:
    svc, llm = service
    llm.replies = ["Answer: I don't know.", "Answer: I don't know."]
    r = svc.ask("How many passengers will the tram carry a day?")
    assert r.refused and r.confidence is None and r.span is None


def test_the_calibration_file_is_checked(tmp_path: Path) -> None:
    bad = tmp_path / "cal.json"
    bad.write_text(json.dumps({"weights": {"bias": 0.1}}))
    with pytest.raises(ConfigError, match="unreadable"):
        AnswerCalibration.load(bad)
    with pytest.raises(ConfigError, match="unreadable"):
        AnswerCalibration.load(tmp_path / "missing.json")
    assert Settings(answer_calibration="").answer_calibration is None  # blank turns it off
    cal = AnswerCalibration.load(DEFAULT_ANSWER_CALIBRATION)
    assert cal(-50.0) == cal(-10.0) < cal(0.0) < cal(5.0) < cal(15.0) == cal(99.0)  # clipped, rising with the score
    assert cal(float("-inf")) == cal(None)


def test_calibration_figures() -> None:
    assert calibration([1.0, 0.0], [1.0, 0.0]) == {"brier": 0.0, "ece": 0.0, "auroc": 1.0}
    assert calibration([0.5] * 4, [1.0, 1.0, 0.0, 0.0]) == {"brier": 0.25, "ece": 0.0, "auroc": 0.5}
    worse = calibration([0.9, 0.9, 0.9, 0.9], [1.0, 0.0, 0.0, 0.0])
    assert worse["ece"] == pytest.approx(0.65) and worse["brier"] == pytest.approx((0.01 + 3 * 0.81) / 4)
    assert calibration([0.7], [1.0])["auroc"] is None and calibration([], []) == {}
    rows = [
        {"qtype": "all", "answerable": True, "confidence": 0.8, "correct": 1.0},
        {"qtype": "all", "answerable": True, "confidence": 0.3, "correct": 0.0},
        {"qtype": "all", "answerable": True, "confidence": None, "correct": 0.0, "refused": True},
    ]
    overall = summarise(rows)["overall"]
    assert overall["confidence_auroc"] == 1.0 and overall["confidence_brier"] == pytest.approx((0.04 + 0.09) / 2)


def test_the_span_keeps_document_offsets_when_lowercasing_would_shift_them(
    tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    text = "İSTANBUL İÇİN İKİ İHALE: the city's mayor, Ekrem İmamoğlu, opened the new metro line on Friday."
    llm = DecliningLLM()
    svc = QAService(Settings(data_dir=tmp_path / "store"), embedder=embedder, llm=llm, load_llm=False)
    svc.ingest([Loaded("ist", Article(id="ist", title="Istanbul metro", text=text))])
    # each "İ" lowers to two characters: a search in the lowered text would point six characters too far
    llm.replies = ["Answer: The mayor Ekrem İmamoğlu opened the line [1].\nSHORT: Ekrem", "Answer: I don't know."]
    r = svc.ask("Who opened the new metro line in Istanbul?")
    assert r.span is not None and r.span.text == "Ekrem" and text[r.span.start : r.span.end] == "Ekrem"
    svc.close()


def test_outcomes_and_confidence_are_counted(service: tuple[QAService, DecliningLLM]) -> None:
    from prometheus_client import REGISTRY

    svc, llm = service

    def value(name: str, labels: dict[str, str]) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    answered, refused = value("qa_answers_total", {"mode": "generative", "outcome": "answered"}), value("qa_answers_total", {"mode": "generative", "outcome": "refused"})
    seen = value("qa_answer_confidence_count", {"mode": "generative"})
    llm.replies = ["Answer: The mayor said the tram would carry 40,000 passengers a day [1].\nSHORT: 40,000"]
    r = svc.ask("How many passengers will the tram carry a day?")
    llm.replies = ["Answer: I don't know.", "Answer: I don't know."]
    svc.ask("How many passengers will the tram carry a day?")
    assert value("qa_answers_total", {"mode": "generative", "outcome": "answered"}) == answered + 1
    assert value("qa_answers_total", {"mode": "generative", "outcome": "refused"}) == refused + 1
    assert value("qa_answer_confidence_count", {"mode": "generative"}) == seen + 1  # the refusal has no confidence
    assert r.confidence is not None and value("qa_answer_confidence_bucket", {"mode": "generative", "le": "1.0"}) >= seen + 1


class SureLLM(DecliningLLM):
    """Scripted replies streamed as `Piece`s with a log-probability per piece, as the local engine reports them."""

    def __init__(self) -> None:
        super().__init__()
        self.logprobs: dict[str, float] = {}  # a piece's text -> its log-probability (others: -0.01)

    def stream(self, messages: list[Message], *, max_tokens: int, stop: list[str] | None = None) -> Iterator[str]:
        self.prompts.append(str(messages[-1]["content"]))
        for word in self.replies.pop(0).split(" "):
            yield Piece(word if word.startswith("Answer") else " " + word, self.logprobs.get(word, -0.01))


def test_the_answers_least_sure_word_leaves_out_lead_citations_and_short_line() -> None:
    pieces = [Piece("Answer", -3.0), Piece(":", -2.0), Piece(" The", -0.1), Piece(" tram", -0.4), Piece(" [", -1.0), Piece("2", -6.0),
              Piece("].", -1.5), Piece("\n", -0.2), Piece("SHORT", -0.3), Piece(":", -0.1), Piece(" Braga", -7.0)]
    assert answer_logprob(pieces) == -0.4
    assert answer_logprob([Piece("Answer: I don't know.")]) is None  # the backend reported none
    assert answer_logprob([]) is None


def test_the_local_engine_events_become_pieces_with_their_lowest_token_logprob() -> None:
    event = {"choices": [{"delta": {"content": " Lisbon"}, "logprobs": {"content": [{"token": " Lis", "logprob": -0.5}, {"token": "bon", "logprob": -0.1}]}}]}
    (piece,) = list(_deltas(event))
    assert piece == " Lisbon" and isinstance(piece, Piece) and piece.logprob == -0.5
    (plain,) = list(_deltas({"choices": [{"delta": {"content": " Porto"}}]}))
    assert plain == " Porto" and getattr(plain, "logprob", None) is None


def test_the_llms_doubt_lowers_the_confidence(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> None:
    llm = SureLLM()
    svc = QAService(Settings(data_dir=tmp_path / "store"), embedder=embedder, llm=llm, load_llm=False)
    svc.ingest([Loaded("braga", Article(id="braga", title="Braga tram", text=REPORT))])
    reply = "Answer: The mayor said the tram would carry 40,000 passengers a day [1].\nSHORT: 40,000"
    llm.replies = [reply, reply]
    sure = svc.ask("How many passengers will the tram carry a day?")
    llm.logprobs = {"40,000": -4.0}  # the model hesitated over the number
    unsure = svc.ask("How many passengers will the tram carry a day?")
    assert sure.answer == unsure.answer and sure.span == unsure.span
    assert sure._signals.logprob == -0.01 and unsure._signals.logprob == -4.0
    assert sure._signals.score == unsure._signals.score is not None and sure._signals.stale == 0.0
    assert "logprob" not in unsure.model_dump_json() and "signals" not in unsure.model_dump_json()  # the eval's input, not the API's
    assert sure.confidence is not None and unsure.confidence is not None and unsure.confidence < sure.confidence
    cal = svc.answer_calibration
    assert cal is not None and cal.with_llm is not None
    assert cal(5.0, 0.0, -9.0) == cal(5.0, 0.0, -8.0) < cal(5.0, 0.0, -1.0) < cal(5.0, 0.0, 0.0)  # clipped at the floor
    svc.close()


def test_the_eval_row_records_the_signals_its_confidence_was_computed_from(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> None:
    """bench/answer_calibration.py refits from these rows, so they must be exactly what the service's calibration read."""
    llm = SureLLM()
    svc = QAService(Settings(data_dir=tmp_path / "store"), embedder=embedder, llm=llm, load_llm=False)
    svc.ingest([Loaded("braga", Article(id="braga", title="Braga tram", text=REPORT))])
    llm.replies = ["Answer: The mayor said the tram would carry 40,000 passengers a day [1].\nSHORT: 40,000"]
    llm.logprobs = {"40,000": -2.5}
    q = {"id": "q1", "question": "How many passengers will the tram carry a day?", "qtype": "how many", "answerable": True, "answers": ["40,000"]}
    row = score_one(svc, q, search_only=False)
    signals = row["confidence_signals"]
    assert signals["logprob"] == -2.5 and signals["score"] is not None and signals["stale"] == 0.0
    cal = svc.answer_calibration
    assert cal is not None and round(cal(signals["score"], signals["stale"], signals["logprob"]), 4) == row["confidence"]
    json.dumps(row)  # a results.jsonl line
    svc.close()


def test_a_source_far_outside_the_questions_window_lowers_the_confidence(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> None:
    llm = DecliningLLM()
    svc = QAService(Settings(data_dir=tmp_path / "store"), embedder=embedder, llm=llm, load_llm=False)
    svc.ingest([Loaded("braga", Article(id="braga", title="Braga tram", text=REPORT, published_at="2023-01-03"))])
    assert svc.reader is not None and svc.answer_calibration is not None
    question = "How many passengers will the new tram carry a day this week?"
    verdict = Verdict(answer="The tram would carry 40,000 passengers a day [1].", short="40,000", cited=[1])
    confidence = {}
    for as_of in ("2023-01-05", "2024-01-05", "2027-01-05"):
        tf = svc._frame(question, as_of)
        plan = svc._plan(question, 5, None, "generative", tf)
        cited = [p for p in plan.passages if p.n == 1]
        confidence[as_of] = calibrated(verdict, plan.passages, svc.reader, svc.answer_calibration, question, tf).confidence
        # "this week" asked on 5 Jan 2024 opens on 30 Dec 2023, 361 days after the article
        assert staleness(cited, tf) == {"2023-01-05": 0.0, "2024-01-05": pytest.approx(361 / 365), "2027-01-05": STALE_CAP_YEARS}[as_of]
    assert confidence["2027-01-05"] < confidence["2024-01-05"] < confidence["2023-01-05"]  # type: ignore[operator]
    undated = svc._frame("How many passengers will the new tram carry a day?", "2027-01-05")
    assert staleness(plan.passages, undated) == 0.0  # no time words: no window to be outside of
    svc.close()
