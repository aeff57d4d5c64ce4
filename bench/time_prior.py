"""Retrieval with and without the question's time (as_of = question_date, the date prior), over a grid of prior
weights and half-lives, on every dev set: the prior must help the dated set (RealTimeQA) and leave the undated one
(QAMR) exactly as it was.

    python bench/time_prior.py --sets realtimeqa qamr

The eval collections must exist (run `qa-service eval --search-only` on each set once: re-ingest is a no-op).
Writes bench/results/time_prior.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from stats import DEV_SETS as SETS  # bench/ is on sys.path when a script runs
from stats import ROOT

GRID: list[dict[str, Any]] = [
    {"as_of": False, "time_weight": 0.0},
    {"as_of": True, "time_weight": 0.0},
    *({"as_of": True, "time_weight": w} for w in (0.25, 0.5, 1.0, 2.0)),
    *({"as_of": True, "time_weight": 0.5, "window_half_life_days": h} for h in (7.0, 30.0)),
    *({"as_of": True, "time_weight": 0.5, "recency_half_life_days": h} for h in (30.0, 60.0)),
    {"as_of": False},
]


def score(svc: Any, questions: list[dict[str, Any]], as_of: bool) -> dict[str, float]:
    from qa_service.eval.metrics import first_rank, rank_scores

    rows = []
    for q in questions:
        docs = [r.doc_id for r in svc.search(q["question"], 10, as_of=q.get("question_date") if as_of else None)]
        rows.append(rank_scores(first_rank(docs, q["doc_id"])))
    return {key: round(sum(r[key] for r in rows) / len(rows), 4) for key in ("hit1", "hit5", "hit10", "mrr10")}


def run_set(folder: Path, limit: int | None) -> list[dict[str, Any]]:
    from qa_service.config import Settings
    from qa_service.eval.runner import collection_for, load_questions
    from qa_service.service import QAService

    defaults = Settings()
    svc = QAService(Settings(collection=collection_for([folder / "corpus.jsonl"])), load_llm=False)
    questions = [q for q in load_questions(folder / "dev.jsonl", limit) if q["answerable"] and q.get("doc_id")]
    out = []
    for point in GRID:
        knobs = {k: v for k, v in point.items() if k != "as_of"}
        for key in ("time_weight", "window_half_life_days", "recency_half_life_days"):
            setattr(svc.settings, key, knobs.get(key, getattr(defaults, key)))
        t = time.perf_counter()
        figures = score(svc, questions, point["as_of"])
        row = {**point, **figures, "ms_per_question": round((time.perf_counter() - t) * 1000 / len(questions), 1)}
        print(json.dumps(row), flush=True)
        out.append(row)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", nargs="+", choices=sorted(SETS), default=sorted(SETS))
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/time_prior.json")
    args = ap.parse_args()
    results = {name: run_set(SETS[name], args.limit) for name in args.sets}
    args.out.write_text(json.dumps({"grid": results}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
