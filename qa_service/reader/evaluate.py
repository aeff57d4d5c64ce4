"""Score the exported reader alone on SQuAD-style pairs: span EM/F1 where the context holds an answer, and how often
it abstains (score below 0) when the question is paired with another context."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

from qa_service.eval.metrics import exact_match, f1, percentile
from qa_service.reader.data import read_jsonl
from qa_service.reader.onnx_reader import OnnxReader


def evaluate(reader: OnnxReader, path: Path, *, limit: int = 0, seed: int = 13) -> dict[str, Any]:
    rows = [r for r in read_jsonl(path) if r.get("answers") or r.get("free_answers")]
    random.Random(seed).shuffle(rows)
    rows = rows[:limit] if limit else rows
    contexts = [r["context"] for r in rows]
    ems, f1s, answered, abstained, times = [], [], 0, 0, []
    rng = random.Random(seed)
    for r in rows:
        golds = [a["text"] for a in r.get("answers") or []] or list(r.get("free_answers") or [])
        t0 = time.perf_counter()
        span = reader.read(r["question"], [r["context"]])[0]
        times.append((time.perf_counter() - t0) * 1000)
        ems.append(exact_match(span.text, golds))
        f1s.append(f1(span.text, golds))
        answered += span.score > 0
        other = contexts[rng.randrange(len(contexts))]
        if other != r["context"]:
            abstained += reader.read(r["question"], [other])[0].score <= 0
    n = len(rows)
    return {
        "file": path.name, "n": n, "em": round(sum(ems) / n, 4), "f1": round(sum(f1s) / n, 4),
        "answered_share": round(answered / n, 4), "abstains_on_other_context": round(abstained / n, 4),
        "ms_p50": percentile(times, 50), "ms_p95": percentile(times, 95),
    }
