"""SQuAD-style answer scores and retrieval ranks."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable

from qa_service.text import normalize


def exact_match(prediction: str | None, answers: list[str]) -> float:
    if not prediction or not answers:
        return 0.0
    p = normalize(prediction)
    return float(any(p == normalize(a) for a in answers))


def f1(prediction: str | None, answers: list[str]) -> float:
    if not prediction or not answers:
        return 0.0
    best = 0.0
    pred = normalize(prediction).split()
    for a in answers:
        gold = normalize(a).split()
        common = Counter(pred) & Counter(gold)
        same = sum(common.values())
        if same == 0:
            continue
        precision, recall = same / len(pred), same / len(gold)
        best = max(best, 2 * precision * recall / (precision + recall))
    return best


def contains(text: str | None, answers: list[str]) -> float:
    if not text:
        return 0.0
    t = f" {normalize(text)} "
    return float(any(normalize(a) and f" {normalize(a)} " in t for a in answers))


def contains_any(texts: Iterable[str | None], answers: list[str]) -> float:
    """1.0 when one of the texts (top chunks, the passages shown) holds a gold answer's words."""
    return max((contains(t, answers) for t in texts), default=0.0)


def first_rank(doc_ids: list[str], gold: str) -> int | None:
    for i, d in enumerate(doc_ids, 1):
        if d == gold:
            return i
    return None


def rank_scores(rank: int | None) -> dict[str, float]:
    """Hits@1/5/10 and reciprocal rank (within the first 10) of the gold document's rank, 1-based, or None."""
    return {
        "hit1": float(rank == 1), "hit5": float(rank is not None and rank <= 5), "hit10": float(rank is not None and rank <= 10),
        "mrr10": 1 / rank if rank and rank <= 10 else 0.0,
    }


def percentile(values: list[float], q: float, digits: int = 1) -> float | None:
    """The nearest-rank percentile (the smallest value with at least q% of the values at or below it), rounded.
    The eval reports and every benchmark use this one definition."""
    if not values:
        return None
    v = sorted(values)
    return round(v[max(0, math.ceil(q / 100 * len(v)) - 1)], digits)


def choose(short: str | None, answer: str | None, choices: list[str]) -> int | None:
    """The choice an answer names, for multiple-choice sets: a choice quoted in the short answer, else in the
    answer sentence, wins when it is the only one quoted there (a longer quoted choice beats one it contains: "Pope
    Benedict XVI" over "Benedict"); else the highest token F1 against the short answer, then the sentence. Ties and
    refusals (no text) choose nothing."""
    for text in (short, answer):
        if not text:
            continue
        quoted = [i for i, c in enumerate(choices) if contains(text, [c])]
        quoted = [i for i in quoted if not any(j != i and normalize(choices[i]) in normalize(choices[j]) for j in quoted)]
        if len(quoted) == 1:
            return quoted[0]
    for text in (short, answer):
        scores = [f1(text, [c]) for c in choices]
        top = max(scores, default=0.0)
        if top > 0:
            return scores.index(top) if scores.count(top) == 1 else None
    return None


def calibration(confidences: list[float], right: list[float], bins: int = 5) -> dict[str, float | None]:
    """How well confidences match outcomes: Brier score, expected calibration error over equal-width bins, and
    AUROC (the chance a right answer is more confident than a wrong one; None without both kinds)."""
    n = len(right)
    if not n:
        return {}
    ece = 0.0
    for b in range(bins):
        idx = [i for i, p in enumerate(confidences) if b / bins <= p < (b + 1) / bins or (b == bins - 1 and p >= 1)]
        if idx:
            ece += abs(sum(right[i] for i in idx) - sum(confidences[i] for i in idx))
    pos = [p for p, y in zip(confidences, right, strict=True) if y]
    neg = [p for p, y in zip(confidences, right, strict=True) if not y]
    auroc = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in pos for b in neg) / (len(pos) * len(neg)) if pos and neg else None
    return {
        "brier": round(sum((p - y) ** 2 for p, y in zip(confidences, right, strict=True)) / n, 4),
        "ece": round(ece / n, 4),
        "auroc": round(auroc, 4) if auroc is not None else None,
    }
