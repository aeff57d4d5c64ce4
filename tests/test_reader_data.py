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


def test_unseen_pairs_are_exactly_those_no_training_step_read(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import gzip
    import json

    from qa_service.reader.data import TRAIN_FILES
    from qa_service.reader.train import TrainConfig, _windows_with_pairs, batch_order, unseen_pairs

    for k, name in enumerate(TRAIN_FILES):
        rows = [{"question": f"Who met the envoy number {k}-{i}?", "context": f"Envoy {k}-{i} met Lavrov in Riyadh.",
                 "answers": [{"text": "Lavrov", "start": len(f"Envoy {k}-{i} met ")}]} for i in range(8)]
        with gzip.open(tmp_path / f"{name}.jsonl.gz", "wt") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    cfg = TrainConfig(data=tmp_path, out=tmp_path / "work", max_length=64, batch_size=4, max_steps=3, hard_negatives=0, easy_negatives=0)
    unseen = {p.question for p in unseen_pairs(cfg)}
    from transformers import AutoTokenizer

    from qa_service.models import resolve_embedder

    made = _windows_with_pairs(cfg, AutoTokenizer.from_pretrained(resolve_embedder(cfg.base)))
    order = batch_order([len(w.input_ids) for w, _ in made], 4, cfg.seed, 0)
    read = {made[i][1].question for b in order[:3] for i in b}
    assert len(read) == 12 and len(unseen) == 40 - 12 and not (read & unseen)


def test_related_negative_is_the_nearest_context_without_the_answer() -> None:
    """The related negative is on the question's subject (not a random context), never the pair's own context, and
    never a context that holds the answer's words."""
    own = "Sergei Lavrov met Marco Rubio in Riyadh on Tuesday."
    also_answer = "The envoys met in Riyadh, where talks on Ukraine went on."
    near_miss = "The envoys met last year in Geneva; the talks on Ukraine stalled."
    unrelated = ["The orchestra played Mahler in Vienna.", "Wheat prices rose after the harvest.", "A new bridge opened."]
    pair = Pair("Where did the envoys meet for talks on Ukraine?", own, own.index("Riyadh"), "Riyadh", "test")
    others = [Pair(f"What was played {i}?", c, 0, c.split()[0], "test") for i, c in enumerate([also_answer, near_miss, *unrelated])]
    mixed = with_negatives([pair, *others], hard=0.0, easy=0.0, related=1.0, seed=3)
    negatives = [p for p in mixed if p.origin.endswith(":related") and p.question == pair.question]
    assert [p.context for p in negatives] == [near_miss] and negatives[0].answer_start is None
    assert with_negatives([pair, *others], hard=0.0, easy=0.0, related=0.0, seed=3) == [pair, *others]
