"""The reader's training windows: the labels point at the answer's tokens, and negatives point at [CLS]."""

from __future__ import annotations

import pytest

from qa_service.reader.data import Pair, featurize, with_negatives

CONTEXT = "Russia has agreed to help. Sergei Lavrov met Marco Rubio in Riyadh on Tuesday, officials said."


@pytest.fixture(scope="module")
def tokenizer():  # type: ignore[no-untyped-def]
    from transformers import AutoTokenizer

    from qa_service.models import resolve_embedder

    return AutoTokenizer.from_pretrained(resolve_embedder("all-MiniLM-L6-v2"))


def test_positive_window_labels_the_answer_tokens(tokenizer) -> None:  # type: ignore[no-untyped-def]
    pair = Pair("Where did the envoys meet?", CONTEXT, CONTEXT.index("Riyadh"), "Riyadh", "test")
    w = featurize(tokenizer, pair, max_length=64)
    assert w is not None and w.start > 0
    assert tokenizer.decode(w.input_ids[w.start : w.end + 1]) == "riyadh"


def test_long_context_windows_and_negatives(tokenizer) -> None:  # type: ignore[no-untyped-def]
    filler = " ".join(f"Sentence {i} says nothing of note." for i in range(60))
    context = f"{filler} The envoys met in Riyadh."
    pair = Pair("Where did the envoys meet?", context, context.index("Riyadh"), "Riyadh", "test")
    w = featurize(tokenizer, pair, max_length=64)
    assert w is not None and len(w.input_ids) <= 64 and tokenizer.decode(w.input_ids[w.start : w.end + 1]) == "riyadh"
    hard = featurize(tokenizer, Pair(pair.question, context, None, "Riyadh", "test:hard"), max_length=64)
    assert hard is not None and (hard.start, hard.end) == (0, 0)
    assert "riyadh" not in tokenizer.decode(hard.input_ids)
    mixed = with_negatives([pair] * 50, hard=0.5, easy=0.0, seed=1)
    assert 50 < len(mixed) < 100 and mixed == with_negatives([pair] * 50, hard=0.5, easy=0.0, seed=1)
