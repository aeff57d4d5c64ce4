"""Score the exported reader alone on SQuAD-style pairs: span EM/F1 where the context holds an answer, and how often
it abstains (score below 0) when the question is paired with another context. Also fits the confidence
calibration: a logistic curve from the reader's score to P(the span is right), on held-out pairs."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

from qa_service.eval.metrics import exact_match, f1, percentile
from qa_service.reader.data import Pair, load_pairs, read_jsonl
from qa_service.reader.onnx_reader import OnnxReader

RIGHT_F1 = 0.5  # a span with at least this token F1 counts as right, for the calibration


def rows_of(path: Path) -> list[dict[str, Any]]:
    return [
        {"question": r["question"], "context": r["context"], "answers": [a["text"] for a in r.get("answers") or []] or list(r.get("free_answers") or [])}
        for r in read_jsonl(path)
        if r.get("answers") or r.get("free_answers")
    ]


def held_out(data: Path, used: int, n: int, seed: int) -> list[dict[str, Any]]:
    """Pairs of the training pool that training's seeded sample of `used` pairs left out."""
    pairs: list[Pair] = load_pairs(data)
    random.Random(seed).shuffle(pairs)
    return [{"question": p.question, "context": p.context, "answers": [p.answer_text]} for p in pairs[used : used + n]]


def unseen_rows(cfg: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """A seeded sample of `n` pairs no training step read, for a run over every pair that stopped early (else none)."""
    from qa_service.reader.train import TrainConfig, unseen_pairs

    config = TrainConfig(**{**cfg, "data": Path(cfg["data"]), "out": Path(cfg["out"])})
    if not config.max_steps:
        return []
    pool = unseen_pairs(config)
    random.Random(config.seed).shuffle(pool)
    return [{"question": p.question, "context": p.context, "answers": [p.answer_text]} for p in pool[:n]]


def evaluate(reader: OnnxReader, rows: list[dict[str, Any]], *, name: str, limit: int = 0, seed: int = 13) -> dict[str, Any]:
    rows = list(rows)
    random.Random(seed).shuffle(rows)
    rows = rows[:limit] if limit else rows
    contexts = [r["context"] for r in rows]
    ems, f1s, answered, abstained, times = [], [], 0, 0, []
    rng = random.Random(seed)
    for r in rows:
        t0 = time.perf_counter()
        span = reader.read(r["question"], [r["context"]])[0]
        times.append((time.perf_counter() - t0) * 1000)
        ems.append(exact_match(span.text, r["answers"]))
        f1s.append(f1(span.text, r["answers"]))
        answered += span.score > 0
        other = contexts[rng.randrange(len(contexts))]
        if other != r["context"]:
            abstained += reader.read(r["question"], [other])[0].score <= 0
    n = len(rows)
    return {
        "set": name, "n": n, "em": round(sum(ems) / n, 4), "f1": round(sum(f1s) / n, 4),
        "answered_share": round(answered / n, 4), "abstains_on_other_context": round(abstained / n, 4),
        "ms_p50": percentile(times, 50), "ms_p95": percentile(times, 95),
    }


def calibrate(reader: OnnxReader, rows: list[dict[str, Any]], seed: int = 13) -> dict[str, float]:
    """Logistic fit of `right` on the score, over each pair read with its own context and with another one."""
    from sklearn.linear_model import LogisticRegression

    rng = random.Random(seed)
    scores: list[list[float]] = []
    right: list[int] = []
    for r in rows:
        span = reader.read(r["question"], [r["context"]])[0]
        scores.append([max(-50.0, span.score)])
        right.append(int(f1(span.text, r["answers"]) >= RIGHT_F1))
        other = rows[rng.randrange(len(rows))]
        if other["context"] != r["context"]:
            scores.append([max(-50.0, reader.read(r["question"], [other["context"]])[0].score)])
            right.append(0)
    if len(set(right)) < 2:  # an untrained model: nothing to fit, the identity curve
        return {"scale": 1.0, "bias": 0.0, "pairs": len(right)}
    fit = LogisticRegression().fit(scores, right)
    return {"scale": round(float(fit.coef_[0][0]), 6), "bias": round(float(fit.intercept_[0]), 6), "pairs": len(right)}
