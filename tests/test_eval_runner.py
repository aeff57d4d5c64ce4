"""The eval summary: what is averaged over which questions, and the latency percentiles."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from qa_service import cli
from qa_service.config import Settings
from qa_service.embedding import SentenceTransformerEmbedder
from qa_service.eval.metrics import contains_any
from qa_service.eval.runner import score_one, summarise
from qa_service.ingest.loaders import Article, Loaded
from qa_service.service import QAService
from tests.test_retry import REPORT


def test_summary_counts_refusals_of_answerable_questions_and_first_tokens_only_where_the_llm_ran() -> None:
    rows = [
        {"qtype": "who", "answerable": True, "refused": 0.0, "choice_correct": 1.0, "total_ms": 100.0, "first_token_ms": 40.0},
        {"qtype": "who", "answerable": True, "refused": 1.0, "choice_correct": 0.0, "total_ms": 20.0, "first_token_ms": None},
        {"qtype": "what", "answerable": False, "refused": 1.0, "refusal_correct": 1.0, "total_ms": 30.0, "first_token_ms": 60.0},
    ]
    overall = summarise(rows)["overall"]
    assert overall["n"] == 3
    assert overall["refused"] == 0.5  # the unanswerable question's refusal is scored as refusal_correct, not here
    assert overall["choice_correct"] == 0.5 and overall["refusal_correct"] == 1.0
    assert overall["first_token_ms_p50"] == 40.0  # nearest rank of [40, 60]; the refusal that never asked the LLM has none
    assert overall["total_ms_p50"] == 30.0
    assert set(summarise(rows)["by_qtype"]) == {"who", "what"}


def test_the_eval_row_says_whether_the_answer_was_retrieved_and_in_front_of_the_model(
    tmp_path: Path, embedder: SentenceTransformerEmbedder
) -> None:
    """answer_hit5 (the gold answer's words in a top-5 chunk, whatever the article) and answer_in_evidence (in the
    passages the answer was read from) split a reading error from a retrieval or selection one. The real reader
    answers (extractive mode), so the evidence is its span's sentence."""
    svc = QAService(Settings(data_dir=tmp_path / "store"), embedder=embedder, load_llm=False)
    svc.ingest([Loaded("braga", Article(id="braga", title="Braga tram", text=REPORT))])
    q = {"id": "q1", "question": "How many signatures did the petition collect?", "qtype": "how many", "answerable": True, "doc_id": "braga"}
    found = score_one(svc, {**q, "answers": ["12,000"]}, search_only=False, mode="extractive")
    assert found["answer_hit5"] == 1.0 and found["answer_in_evidence"] == 1.0 and found["short_answer"] == "12,000"
    elsewhere = score_one(svc, {**q, "answers": ["Ricardo Rio"]}, search_only=False, mode="extractive")
    assert elsewhere["answer_hit5"] == 1.0 and elsewhere["answer_in_evidence"] == 0.0  # retrieved, not what was read
    missing = score_one(svc, {**q, "answers": ["Guimaraes"]}, search_only=True)
    assert missing["answer_hit5"] == 0.0 and "answer_in_evidence" not in missing
    overall = summarise([found, elsewhere, missing])["overall"]
    assert overall["answer_hit5"] == round(2 / 3, 4) and overall["answer_in_evidence"] == 0.5
    svc.close()


def test_contains_any_needs_a_gold_answers_whole_words_in_one_text() -> None:
    assert contains_any([None, "The petition collected 12,000 signatures."], ["12,000"]) == 1.0
    assert contains_any(["It collected 112,000 signatures."], ["12,000"]) == 0.0  # whole words, not a substring
    assert contains_any([], ["12,000"]) == 0.0 and contains_any(["12,000"], []) == 0.0


@pytest.mark.llm
def test_search_only_with_evidence_scores_what_the_llm_would_read_without_asking_it(tmp_path: Path, embedder: SentenceTransformerEmbedder) -> None:
    """`--search-only --evidence` replays the sentence selection: the first passages the LLM would read, scored for the
    gold answer, with no answer asked (the LLM is loaded only for its context length, which sets the budget)."""
    s = Settings(data_dir=tmp_path / "store", llm_model="smollm2-135m-instruct-q4_1", context_tokens=64, wide_context_tokens=0, retry_wide=False)
    svc = QAService(s, embedder=embedder, load_llm=False)
    svc.ingest([Loaded("braga", Article(id="braga", title="Braga tram", text=REPORT))])
    q = {"id": "q1", "question": "How many signatures did the petition collect?", "qtype": "how many", "answerable": True, "doc_id": "braga"}
    shown = " ".join(p.text for p in svc.passages_for(q["question"]))
    assert "12,000 signatures" in shown and "start next spring" not in shown  # 64 tokens: the answer's sentence and a few more, not the article
    read = score_one(svc, {**q, "answers": ["12,000"]}, search_only=True, evidence=True)
    elsewhere = score_one(svc, {**q, "answers": ["next spring"]}, search_only=True, evidence=True)
    assert read["answer_in_evidence"] == 1.0 and elsewhere["answer_hit5"] == 1.0 and elsewhere["answer_in_evidence"] == 0.0
    assert "answer" not in read and "answer_in_evidence" not in score_one(svc, {**q, "answers": ["12,000"]}, search_only=True)
    svc.close()


def test_evidence_needs_search_only() -> None:
    result = CliRunner().invoke(cli.app, ["eval", "--questions", "q.jsonl", "--evidence"])
    assert result.exit_code == 2 and "--search-only" in result.output
