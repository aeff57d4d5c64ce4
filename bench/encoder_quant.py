"""The encoder's int8 weights as shipped (7 bits, per channel: `reduce_range`, as the reader's are) against the same
quantisation with all 8 bits, as it shipped before: 7-bit weights keep the u8 x s8 products of CPUs without VNNI from
saturating, so the vectors are the same on every x86 CPU. Does that cost retrieval? Dense retrieval only (no BM25), doc level,
over QAMR dev's corpus chunked as ingest chunks it, plus each export's cosine to fp32.

    python bench/encoder_quant.py --out bench/results/encoder_quant.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared/eval/qamr-wikinews"


def doc_order(scores: np.ndarray, owner: list[str]) -> list[str]:
    """The articles in the order of their best chunk."""
    return list(dict.fromkeys(owner[j] for j in np.argsort(-scores)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/encoder_quant.json")
    args = ap.parse_args()
    from qa_service.config import offline_environment

    offline_environment()

    from qa_service.config import Settings
    from qa_service.embedding import SentenceTransformerEmbedder, _OnnxTransformer, onnx_path, quantize_onnx
    from qa_service.eval.metrics import first_rank, rank_scores
    from qa_service.ingest.loaders import load_paths
    from qa_service.ingest.pipeline import IngestPipeline
    from qa_service.models import resolve_embedder
    from qa_service.store.chroma import ChromaStore, make_client

    s = Settings()
    embedder = SentenceTransformerEmbedder(s.embedding_model, backend="onnx-int8", cache_dir=s.model_cache_dir)  # makes both exports
    fp32, reduced = onnx_path(s.embedding_model, s.model_cache_dir), onnx_path(s.embedding_model, s.model_cache_dir, int8=True)
    int8 = quantize_onnx(fp32, Path(tempfile.mkdtemp(prefix="qa-quant-")) / "full_range.onnx", reduce_range=False)

    pipeline = IngestPipeline(ChromaStore(make_client(tempfile.mkdtemp(prefix="qa-quant-"), None), "probe"), embedder, s)
    chunks, owner = [], []
    for item in load_paths([SHARED / "corpus.jsonl"]):
        if item.article is not None:
            for c in pipeline.chunk(item.article):
                chunks.append(c.text)
                owner.append(c.doc_id)
    questions = [json.loads(line) for line in (SHARED / "dev.jsonl").read_text().splitlines()]
    model_dir = Path(resolve_embedder(s.embedding_model))
    out: dict[str, object] = {"chunks": len(chunks), "questions": len(questions)}
    vecs: dict[str, np.ndarray] = {}
    for name, path in (("fp32", fp32), ("int8", int8), ("int8_reduce_range", reduced)):
        enc = _OnnxTransformer(path, model_dir, 2)
        vecs[name] = enc.encode(chunks, s.embedding_batch_size)
        queries = np.stack([enc.encode([q["question"]], 1)[0] for q in questions])
        scores = [rank_scores(first_rank(doc_order(row, owner), q["doc_id"])) for q, row in zip(questions, queries @ vecs[name].T, strict=True)]
        row: dict[str, object] = {f"dense_{k}": round(float(np.mean([x[k] for x in scores])), 3) for k in ("hit5", "mrr10")}
        if name != "fp32":
            cos = (vecs[name] * vecs["fp32"]).sum(axis=1)
            row["cosine_to_fp32"] = {"min": round(float(cos.min()), 4), "mean": round(float(cos.mean()), 4)}
        out[name] = row
        print(name, row, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
