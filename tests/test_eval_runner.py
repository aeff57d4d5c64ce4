"""The eval summary: what is averaged over which questions, and the latency percentiles."""

from __future__ import annotations

from qa_service.eval.runner import summarise


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
