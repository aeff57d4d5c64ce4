"""Fit the answer calibration: the reader's score of the LLM's short answer -> P(the answer is right).

Input: the per-question rows (`results.jsonl`) of `qa-service eval` runs on the default path, with the questions and
corpus each was run on (the eval's stores must still hold that corpus: the script asks the same collection). For
every answered, answerable question the retrieval is replayed (as of its question date, as the eval asks), the short
answer is found in the chunks of the documents it cited and scored there by the reader (`compose.located`, the
service's own code), and a logistic regression of `correct` (gold in the answer) on the clipped score and whether
the answer was found is fitted. Each run is labelled FOLD/SET: each fold's fit is scored on the other folds, as a whole
and per set (AUROC, expected calibration error over 5 bins, Brier score; a constant, the fold's rate of right
answers, for comparison), and the written fit uses all runs.

    python bench/answer_calibration.py \\
        --run a/qamr ../shared/eval/qamr-wikinews/dev.jsonl ../shared/eval/qamr-wikinews/corpus.jsonl RUN/qamr/results.jsonl \\
        --run b/qamr ../shared/eval/qamr-wikinews/dev.jsonl ../shared/eval/qamr-wikinews/corpus.jsonl RUN/qamr-101-200/results.jsonl \\
        --run a/realtimeqa ... --run b/realtimeqa ... --out models/answer_calibration.json
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np

from qa_service.compose import AnswerCalibration

ROOT = Path(__file__).resolve().parent.parent
SHAPE = AnswerCalibration(0.0, 0.0, 0.0)  # the service's features (clip, scale); the fit supplies the weights


def replay(questions: Path, corpus: Path, results: Path) -> list[dict[str, Any]]:
    from qa_service.compose import located
    from qa_service.config import Settings
    from qa_service.eval.runner import collection_for, load_questions
    from qa_service.passages import Passage
    from qa_service.service import QAService

    settings = Settings().model_copy(update={"collection": collection_for([corpus]), "answer_calibration": None})
    svc = QAService(settings, load_llm=False)
    assert svc.reader is not None, "the reader must be loaded (QA_READER=false keeps it for the default path by default)"
    by_id = {q["id"]: q for q in load_questions(questions, None)}
    out = []
    for line in results.read_text().splitlines():
        r = json.loads(line)
        if not r.get("answerable") or r.get("refused"):
            continue
        q = by_id[r["id"]]
        tf = svc._frame(q["question"], q.get("question_date"))
        plan = svc._plan(q["question"], settings.top_k, None, "generative", tf)
        cited = [Passage(n, h, h.chunk.text, []) for n, h in enumerate(plan.hits, 1) if h.chunk.doc_id in set(r["cited_docs"])]
        _, score = located(r["short_answer"], cited, svc.reader, q["question"]) if r.get("short_answer") else (None, None)
        out.append({"id": r["id"], "score": score, "correct": float(r["correct"])})
    svc.close()
    return out


def scores(p: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    from qa_service.eval.metrics import calibration

    return {"n": len(y), "right": round(float(y.mean()), 3), **calibration([float(v) for v in p], [float(v) for v in y])}


def fit(x: np.ndarray, y: np.ndarray) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=10.0).fit(x, y)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", nargs=4, action="append", required=True, metavar=("FOLD/SET", "QUESTIONS", "CORPUS", "RESULTS"))
    ap.add_argument("--out", type=Path, default=ROOT / "models/answer_calibration.json")
    args = ap.parse_args()
    from qa_service.config import offline_environment

    offline_environment()
    rows: dict[str, list[dict[str, Any]]] = {}
    for label, questions, corpus, results in args.run:
        fold, _, name = label.partition("/")
        got = [dict(r, set=name) for r in replay(Path(questions), Path(corpus), Path(results))]
        rows.setdefault(fold, []).extend(got)
        print(f"{label} {results}: {len(got)} answered", flush=True)

    def xy(rs: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
        return np.array([SHAPE.features(r["score"]) for r in rs]), np.array([r["correct"] for r in rs])

    folds = sorted(rows)
    checks: dict[str, Any] = {}
    for a in folds:
        for b in folds:
            if a == b:
                continue
            xa, ya = xy(rows[a])
            model = fit(xa, ya)
            for name in ["all", *sorted({r["set"] for r in rows[b]})]:
                xb, yb = xy([r for r in rows[b] if name in ("all", r["set"])])
                checks[f"fit on {a}, scored on {b}, {name}"] = {
                    "calibrated": scores(model.predict_proba(xb)[:, 1], yb),
                    "constant": scores(np.full(len(yb), ya.mean()), yb),
                }
    x, y = xy([r for f in folds for r in rows[f]])
    model = fit(x, y)
    result = {
        "weights": {"bias": round(float(model.intercept_[0]), 4), "score": round(float(model.coef_[0][0]), 4), "found": round(float(model.coef_[0][1]), 4)},
        "clip": list(SHAPE.clip), "scale": SHAPE.scale,
        "fitted_on": {"answers": len(y), "right": round(float(y.mean()), 3), "runs": [{"run": label, "questions": q} for label, q, _, _ in args.run]},
        "in_sample": scores(model.predict_proba(x)[:, 1], y),
        "command": "python bench/answer_calibration.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "cross_fit": checks,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
