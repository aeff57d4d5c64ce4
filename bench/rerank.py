"""Retrieval before and after reranking with the trained reader, on several dev sets, over a grid of fusion weights
and candidate counts. Each question's candidates are retrieved and read once; the grid is scored from those reads.

    python bench/rerank.py --sets qamr realtimeqa --candidates 10 20 30 --weights 0 0.5 1 2 4 1000

The eval collections must exist (run `qa-service eval --search-only` on each set once: re-ingest is a no-op).
Writes bench/results/rerank.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from stats import DEV_SETS as SETS  # bench/ is on sys.path when a script runs
from stats import ROOT


def doc_metrics(ranked: list[list[str]], golds: list[str]) -> dict[str, float]:
    from qa_service.eval.metrics import first_rank, rank_scores

    rows = [rank_scores(first_rank(docs[:10], gold)) for docs, gold in zip(ranked, golds, strict=True)]
    return {key: round(sum(r[key] for r in rows) / len(rows), 4) for key in ("hit1", "hit5", "hit10", "mrr10")}


def read_set(name: str, folder: Path, candidates: int, limit: int | None) -> tuple[list[list[Any]], list[str], float]:
    from qa_service.config import Settings
    from qa_service.eval.runner import collection_for, load_questions
    from qa_service.reading import read
    from qa_service.retrieval import where_from
    from qa_service.service import QAService

    settings = Settings(collection=collection_for([folder / "corpus.jsonl"]), reader=True)
    svc = QAService(settings, load_llm=False)
    assert svc.reader is not None
    qs = [q for q in load_questions(folder / "dev.jsonl", limit) if q["answerable"] and q.get("doc_id")]
    per_q: list[list[Any]] = []
    t0 = time.perf_counter()
    for q in qs:
        hits = svc.retriever.search(q["question"], candidates, where_from(None))
        per_q.append(read(svc.reader, q["question"], hits))
    ms = (time.perf_counter() - t0) * 1000 / max(1, len(qs))
    print(f"{name}: {len(qs)} questions read, {ms:.0f} ms per question for {candidates} candidates", flush=True)
    return per_q, [q["doc_id"] for q in qs], ms


def main() -> None:
    from qa_service.reading import rerank

    ap = argparse.ArgumentParser()
    ap.add_argument("--sets", nargs="+", default=list(SETS))
    ap.add_argument("--candidates", nargs="+", type=int, default=[10, 20, 30])
    ap.add_argument("--weights", nargs="+", type=float, default=[0, 0.5, 1, 2, 4, 1000])
    ap.add_argument("--rrf-k", type=int, default=5)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/rerank.json")
    args = ap.parse_args()
    most = max(args.candidates)
    results: dict[str, Any] = {"command": "python bench/rerank.py " + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "out"), "sets": {}}
    for name in args.sets:
        reads, golds, ms = read_set(name, SETS[name], most, args.limit)
        rows = [{"candidates": 0, "weight": None, **doc_metrics([[r.hit.chunk.doc_id for r in rs] for rs in reads], golds)}]
        for n in args.candidates:
            for w in args.weights:
                ranked = [[r.hit.chunk.doc_id for r in rerank(rs[:n], reader_weight=w, rrf_k=args.rrf_k)] for rs in reads]
                rows.append({"candidates": n, "weight": w, **doc_metrics(ranked, golds)})
        for row in rows:
            print(name, row, flush=True)
        results["sets"][name] = {"questions": len(golds), "read_ms_per_question": round(ms), "read_candidates": most, "grid": rows}
    args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
