"""qa-service eval: run questions through search and ask, score them, write summary/results/report."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from qa_service.config import Settings
from qa_service.eval import metrics as m
from qa_service.ingest.loaders import load_paths
from qa_service.schemas import Mode
from qa_service.service import QAService
from qa_service.text import normalize


def load_questions(path: Path, limit: int | None) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for r in rows:
        r.setdefault("answerable", bool(r.get("answers")))
        r.setdefault("qtype", "unanswerable" if not r["answerable"] else "all")
    return rows[:limit] if limit else rows


def score_one(
    svc: QAService, q: dict[str, Any], *, search_only: bool, mode: Mode | None = None, k_search: int = 10, as_of: bool = True,
    evidence: bool = False,
) -> dict[str, Any]:
    """One question's retrieval and answer scores; asked as of its question_date when `as_of` and it has one. With
    `search_only` and `evidence`, also whether the gold answer is in the passages the LLM would read first."""
    out: dict[str, Any] = {"id": q.get("id"), "question": q["question"], "qtype": q["qtype"], "answerable": q["answerable"]}
    when = q.get("question_date") if as_of else None
    t0 = time.perf_counter()
    results = svc.search(q["question"], k_search, rerank=svc.settings.reader, as_of=when)
    out["search_ms"] = round((time.perf_counter() - t0) * 1000, 1)
    docs = [r.doc_id for r in results]
    gold = q.get("doc_id")
    if gold and q["answerable"]:
        rank = m.first_rank(docs, gold)
        out.update(rank=rank, **m.rank_scores(rank))
        if q.get("evidence"):
            ev = normalize(q["evidence"])
            out["passage_hit5"] = float(any(ev in normalize(r.text) for r in results[:5]))
    if q["answerable"] and q.get("answers"):
        # the answer's words in any of the top chunks: a news set's one gold article per question is a floor when
        # other articles tell the same story
        out["answer_hit5"] = m.contains_any((r.text for r in results[:5]), q["answers"])
    if search_only:
        if evidence and q["answerable"] and q.get("answers"):
            out["answer_in_evidence"] = m.contains_any((p.text for p in svc.passages_for(q["question"], as_of=when)), q["answers"])
        return out
    r = svc.ask(q["question"], mode=mode, as_of=when)
    out.update(
        answer=r.answer,
        short_answer=r.short_answer,
        refused=r.refused,
        confidence=r.confidence,
        confidence_signals=dataclasses.asdict(r._signals) if r._signals is not None else None,
        cited_docs=[c.doc_id for c in r.citations],
        retrieve_ms=r.timings.retrieve_ms,
        generate_ms=r.timings.generate_ms,
        total_ms=r.timings.total_ms,
        first_token_ms=r.timings.first_token_ms,
    )
    if q["answerable"]:
        answers = q.get("answers", [])
        out["em"] = m.exact_match(r.short_answer, answers)
        out["f1"] = m.f1(r.short_answer, answers)
        out["contains"] = m.contains_any([r.answer, r.short_answer], answers)
        out["correct"] = float(out["contains"] > 0 or out["em"] > 0)
        # was the answer in front of the model at all: splits a reading error from a retrieval or selection one
        out["answer_in_evidence"] = m.contains_any(r._evidence, answers)
        if q.get("choices"):
            picked = None if r.refused else m.choose(r.short_answer, r.answer, q["choices"])
            out["choice"] = picked
            out["choice_correct"] = float(picked is not None and m.exact_match(q["choices"][picked], answers) > 0)
        if gold and r.citations:
            out["citation_precision"] = sum(d == gold for d in out["cited_docs"]) / len(out["cited_docs"])
    else:
        out["refusal_correct"] = float(r.refused)
    return out


METRICS = [
    "hit1", "hit5", "hit10", "mrr10", "passage_hit5", "answer_hit5", "answer_in_evidence", "em", "f1", "contains", "correct", "choice_correct", "citation_precision",
    "refused", "refusal_correct",
]


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def agg(sub: list[dict[str, Any]]) -> dict[str, Any]:
        res: dict[str, Any] = {"n": len(sub)}
        for key in METRICS:
            vals = [float(r[key]) for r in sub if key in r and (key != "refused" or r["answerable"])]
            if vals:
                res[key] = round(sum(vals) / len(vals), 4)
        scored = [r for r in sub if r["answerable"] and r.get("confidence") is not None and "correct" in r]
        for key, value in m.calibration([r["confidence"] for r in scored], [r["correct"] for r in scored]).items():
            res[f"confidence_{key}"] = value
        for key in ("search_ms", "retrieve_ms", "generate_ms", "total_ms", "first_token_ms"):
            vals = [r[key] for r in sub if r.get(key) is not None]  # no first token when no LLM was asked
            if vals:
                res[f"{key}_p50"] = m.percentile(vals, 50)
                res[f"{key}_p95"] = m.percentile(vals, 95)
        return res

    by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_type[r["qtype"]].append(r)
    return {"overall": agg(rows), "by_qtype": {t: agg(v) for t, v in sorted(by_type.items())}}


def collection_for(corpus: list[Path]) -> str:
    """One collection per corpus (its folder and file names), so two eval sets never share or wipe one."""
    key = hashlib.sha1("|".join(str(c.resolve()) for c in corpus).encode()).hexdigest()[:8]
    return f"eval-{corpus[0].parent.name[:24]}-{corpus[0].stem[:16]}-{key}".replace("_", "-").lower()


def run(
    settings: Settings, questions: Path, *, corpus: list[Path] | None, out: Path, search_only: bool, limit: int | None,
    progress: bool = True, mode: Mode | None = None, fresh: bool = False, as_of: bool = True, evidence: bool = False,
) -> dict[str, Any]:
    from tqdm import tqdm

    if corpus:
        settings = settings.model_copy(update={"collection": collection_for(corpus)})
    generative = not search_only and (mode or settings.answer_mode) == "generative"
    svc = QAService(settings, load_llm=generative)
    if corpus:
        if fresh:
            svc.store.reset()
        t = time.perf_counter()
        report = svc.ingest(load_paths(corpus))
        ingest = {
            "documents": report.added + report.updated + report.unchanged, "added": report.added, "failed": report.failed,
            "chunks": report.chunks_written, "seconds": round(time.perf_counter() - t, 1),
        }
    else:
        ingest = None
    qs = load_questions(questions, limit)
    rows = [score_one(svc, q, search_only=search_only, mode=mode, as_of=as_of, evidence=evidence) for q in tqdm(qs, disable=not progress, unit="q")]
    summary = summarise(rows)
    summary["config"] = {
        "questions": str(questions),
        "corpus": [str(c) for c in corpus] if corpus else None,
        "search_only": search_only,
        "evidence": search_only and evidence,
        "as_of": "question_date" if as_of and any("question_date" in q for q in qs) else None,
        "time_weight": settings.time_weight,
        "window_half_life_days": settings.window_half_life_days,
        "recency_half_life_days": settings.recency_half_life_days,
        "mode": None if search_only else (mode or settings.answer_mode),
        "reader": str(settings.reader_model) if settings.loads_reader else None,
        "reader_answers": settings.reader,
        "sentence_reader_weight": settings.sentence_reader_weight,
        "wide_context_tokens": settings.wide_context_tokens,
        "reader_sure": settings.reader_sure,
        "retry_wide": settings.retry_wide,
        "answer_calibration": str(settings.answer_calibration) if settings.answer_calibration and settings.loads_reader else None,
        "reader_candidates": settings.reader_candidates,
        "reader_weight": settings.reader_weight,
        "hybrid": settings.hybrid,
        "chunk_size": settings.chunk_size,
        "chunk_overlap": settings.chunk_overlap,
        "top_k": settings.top_k,
        "llm_model": settings.llm_model if settings.llm_backend == "local" else settings.openai_model,
        "embedding_model": settings.embedding_model,
        "context_tokens": settings.context_tokens,
        "strict_grounding": settings.strict_grounding,
        "missing_terms": settings.missing_terms,
    }
    summary["ingest"] = ingest
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    with (out / "results.jsonl").open("w") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return summary


def compare(summary: dict[str, Any], baseline: dict[str, Any]) -> list[tuple[str, float, float]]:
    deltas = []
    for key, value in summary["overall"].items():
        base = baseline.get("overall", {}).get(key)
        if isinstance(value, (int, float)) and isinstance(base, (int, float)) and key != "n":
            deltas.append((key, base, value))
    return deltas
