"""Seed-set ask latency and quality, per model, broken down by stage, through the streaming path the API uses.

For every model: seeds ingested into a temporary store, one warm-up question, then every seed question in order.
Per question: retrieve (search + passage selection + prompt build), time to first token, generation, total; and
whether the answer is right (gold phrase in short_answer or answer; unanswerables refused).

    python bench/ask_latency.py --models qwen2.5-coder-1.5b-instruct-q4_k_m qwen2.5-coder-0.5b-instruct-q4_k_m
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from qa_service.eval.metrics import percentile

ROOT = Path(__file__).resolve().parent.parent
QUESTIONS = ROOT.parent / "shared/eval/seed/questions.jsonl"



def correct(q: dict[str, Any], answer: str, short: str | None, refused: bool) -> bool:
    """The eval's rule: the gold phrase (SQuAD-normalised) in short_answer or answer; unanswerables refused."""
    from qa_service.eval import metrics

    if not q["answerable"]:
        return refused
    return not refused and metrics.contains_any([answer, short], q["answers"]) > 0


def bench_model(model: str, overrides: dict[str, object]) -> dict[str, object]:
    from qa_service.config import Settings
    from qa_service.ingest.chunking import count_tokens
    from qa_service.ingest.loaders import load_paths
    from qa_service.service import QAService

    questions = [json.loads(line) for line in QUESTIONS.read_text().splitlines() if line.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        svc = QAService(Settings(data_dir=Path(tmp) / "store", llm_model=model, **overrides))  # type: ignore[arg-type]
        load_s = time.perf_counter() - t
        svc.ingest(load_paths([ROOT / "seeds"]))
        svc.ask("Which country reportedly agreed to mediate between the US and Iran?")  # warm-up: fills the prefix cache
        rows = []
        for q in questions:
            first = None
            t0 = time.perf_counter()
            final = None
            for ev in svc.ask_stream(q["question"]):
                if ev.event == "token" and first is None:
                    first = time.perf_counter() - t0
                elif ev.event == "done":
                    final = ev.data
            assert final is not None
            tm = final.timings
            rows.append({
                "id": q["id"], "correct": correct(q, final.answer, final.short_answer, final.refused), "refused": final.refused,
                "answer": final.answer, "short_answer": final.short_answer,
                "retrieve_ms": tm.retrieve_ms, "first_token_ms": tm.first_token_ms, "generate_ms": tm.generate_ms, "total_ms": tm.total_ms,
                "answer_tokens": count_tokens(final.answer),
            })
        prefix_tokens = svc.generator.system_tokens
        svc.close()
    gen = [r for r in rows if r["first_token_ms"] is not None]
    answerable = [r for r, q in zip(rows, questions, strict=True) if q["answerable"]]
    return {
        "model": model, "settings": overrides, "load_s": round(load_s, 2), "cached_prefix_tokens": prefix_tokens,
        "correct": sum(r["correct"] for r in rows), "questions": len(rows),
        "answerable_correct": f"{sum(r['correct'] for r in answerable)}/{len(answerable)}",
        "unanswerable_refused": f"{sum(r['correct'] for r, q in zip(rows, questions, strict=True) if not q['answerable'])}/{len(rows) - len(answerable)}",
        "total_ms": {"p50": percentile([r["total_ms"] for r in rows], 50), "p95": percentile([r["total_ms"] for r in rows], 95)},
        "first_token_ms": {"p50": percentile([r["first_token_ms"] for r in gen], 50), "p95": percentile([r["first_token_ms"] for r in gen], 95)} if gen else None,
        "retrieve_ms": {"p50": percentile([r["retrieve_ms"] for r in rows], 50)},
        "generation_after_first_token_ms": {"p50": percentile([r["generate_ms"] - (r["first_token_ms"] - r["retrieve_ms"]) for r in gen], 50)} if gen else None,
        "mean_answer_tokens": round(statistics.mean(r["answer_tokens"] for r in rows), 1),
        "rows": rows,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["qwen2.5-coder-1.5b-instruct-q4_k_m"])
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="a Settings override, e.g. context_tokens=200")
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/ask_latency.json")
    args = ap.parse_args()
    overrides: dict[str, object] = {}
    for item in args.set:
        key, value = item.split("=", 1)
        overrides[key] = json.loads(value) if value[:1].isdigit() or value in ("true", "false") else value
    results = []
    for model in args.models:
        r = bench_model(model, overrides)
        results.append(r)
        print(json.dumps({k: v for k, v in r.items() if k != "rows"}))
    out = {"machine": {"cpus": os.cpu_count()}, "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
