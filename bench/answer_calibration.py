"""Fit the answer calibration: the reader's score of the LLM's short answer, its sources' age and the LLM's doubt -> P(right).

Input: the per-question rows (`results.jsonl`) of `qa-service eval` runs on the default path. Each answered row
carries `confidence_signals`, what the service's calibration read for it (`compose.Signals`: the reader's score of
the short answer in its cited chunks, the cited sources' staleness, the LLM's lowest word log-probability), so the
fit sees exactly what the service computes. Two logistic regressions of `correct` (gold in the answer) are fitted: on
the clipped score, whether the answer was found and the staleness (the weights for a backend that reports no
log-probabilities), and on those plus the log-probability. Each run is labelled FOLD/SET: each fold's fits are scored
on the other folds, as a whole and per set (AUROC, expected calibration error over 5 bins, Brier score; a constant,
the fold's rate of right answers, for comparison), and the written fits use all runs.

    python bench/answer_calibration.py \\
        --run a/qamr RUN/qamr-a/results.jsonl --run b/qamr RUN/qamr-b/results.jsonl \\
        --run a/realtimeqa RUN/rtqa-a/results.jsonl --run b/realtimeqa RUN/rtqa-b/results.jsonl \\
        --out models/answer_calibration.json
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np

from qa_service.compose import AnswerCalibration, Weights

ROOT = Path(__file__).resolve().parent.parent
SHAPE = AnswerCalibration(Weights(0.0, 0.0, 0.0, 0.0))  # the service's features (clips, scale); the fit supplies the weights


def rows_of(results: Path) -> list[dict[str, Any]]:
    """The answered, answerable rows that carry the calibration's signals (refusals and other modes do not)."""
    out = []
    for line in results.read_text().splitlines():
        r = json.loads(line)
        sig = r.get("confidence_signals")
        if r.get("answerable") and not r.get("refused") and sig is not None:
            out.append({"id": r["id"], **sig, "correct": float(r["correct"])})
    return out


def scores(p: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    from qa_service.eval.metrics import calibration

    return {"n": len(y), "right": round(float(y.mean()), 3), **calibration([float(v) for v in p], [float(v) for v in y])}


def fit(x: np.ndarray, y: np.ndarray) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=10.0).fit(x, y)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", nargs=2, action="append", required=True, metavar=("FOLD/SET", "RESULTS"))
    ap.add_argument("--out", type=Path, default=ROOT / "models/answer_calibration.json")
    args = ap.parse_args()
    rows: dict[str, list[dict[str, Any]]] = {}
    for label, results in args.run:
        fold, _, name = label.partition("/")
        got = [dict(r, set=name) for r in rows_of(Path(results))]
        rows.setdefault(fold, []).extend(got)
        print(f"{label} {results}: {len(got)} answered", flush=True)

    def xy(rs: list[dict[str, Any]], llm: bool) -> tuple[np.ndarray, np.ndarray]:
        feats = [SHAPE.features(r["score"], r["stale"], r["logprob"]) for r in rs]
        return np.array([f if llm else f[:3] for f in feats], dtype=float), np.array([r["correct"] for r in rs])

    def usable(rs: list[dict[str, Any]], llm: bool) -> list[dict[str, Any]]:
        return [r for r in rs if r["logprob"] is not None] if llm else rs

    folds = sorted(rows)
    fits = {"reader": False, "reader + llm": True}
    checks: dict[str, Any] = {}
    for a in folds:
        for b in folds:
            if a == b:
                continue
            for name in ["all", *sorted({r["set"] for r in rows[b]})]:
                part = [r for r in rows[b] if name in ("all", r["set"])]
                row: dict[str, Any] = {}
                for kind, llm in fits.items():
                    train, test = usable(rows[a], llm), usable(part, llm)
                    if not train or not test:
                        continue
                    xa, ya = xy(train, llm)
                    xb, yb = xy(test, llm)
                    row[kind] = scores(fit(xa, ya).predict_proba(xb)[:, 1], yb)
                    row["constant" if not llm else "constant (rows with log-probabilities)"] = scores(np.full(len(yb), ya.mean()), yb)
                checks[f"fit on {a}, scored on {b}, {name}"] = row
    every = [r for f in folds for r in rows[f]]
    x, y = xy(every, False)
    model = fit(x, y)
    result: dict[str, Any] = {
        "weights": {key: round(float(v), 4) for key, v in zip(("bias", "score", "found", "stale"), [model.intercept_[0], *model.coef_[0]], strict=True)},
        "clip": list(SHAPE.clip), "scale": SHAPE.scale, "llm_floor": SHAPE.llm_floor,
    }
    with_llm = usable(every, True)
    if with_llm:
        xl, yl = xy(with_llm, True)
        full = fit(xl, yl)
        result["weights_with_llm"] = {
            key: round(float(v), 4) for key, v in zip(("bias", "score", "found", "stale", "llm"), [full.intercept_[0], *full.coef_[0]], strict=True)
        }
    result.update({
        "fitted_on": {
            "answers": len(y), "with_logprobs": len(with_llm), "right": round(float(y.mean()), 3),
            "runs": [{"run": label, "rows": str(results)} for label, results in args.run],
        },
        "in_sample": scores(model.predict_proba(x)[:, 1], y),
        "command": "python bench/answer_calibration.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "cross_fit": checks,
    })
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
