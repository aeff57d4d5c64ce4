"""The encoder through torch (sentence-transformers `encode`) and through onnxruntime (the exported model that
qa-service uses by default), on the same texts in one run: chunk batches, single queries, and how close the
vectors are.

    python bench/encoder.py --out bench/results/encoder.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from stats import pct  # bench/ is on sys.path when a script runs

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared/eval/qamr-wikinews"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chunks", type=int, default=600)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/encoder.json")
    args = ap.parse_args()
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

    from qa_service.config import Settings
    from qa_service.embedding import SentenceTransformerEmbedder
    from qa_service.ingest.loaders import load_paths
    from qa_service.ingest.pipeline import IngestPipeline
    from qa_service.store.chroma import ChromaStore, make_client

    s = Settings()
    items = [i for i in load_paths([SHARED / "corpus.jsonl"]) if i.article]
    engines = {
        b: SentenceTransformerEmbedder(s.embedding_model, batch_size=s.embedding_batch_size, backend=b, bulk_threshold=0, cache_dir=s.model_cache_dir)  # type: ignore[arg-type]
        for b in ("torch", "onnx")
    }
    pipeline = IngestPipeline(ChromaStore(make_client(tempfile.mkdtemp(prefix="qa-encoder-"), None), "probe"), engines["torch"], s)
    texts = [c.text for i in items for c in pipeline.chunk(i.article)][: args.chunks]
    questions = [json.loads(line)["question"] for line in (SHARED / "dev.jsonl").read_text().splitlines()][: args.queries]
    out: dict[str, object] = {"chunks": len(texts), "queries": len(questions), "batch_size": s.embedding_batch_size}
    vecs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for rnd in range(2):  # two interleaved rounds: the second one is reported, the first warms both up
        for name, emb in engines.items():
            t = time.perf_counter()
            docs = emb.embed(texts)
            batch_s = time.perf_counter() - t
            lat, qv = [], []
            for q in questions:
                t = time.perf_counter()
                qv.append(emb.embed([q])[0])
                lat.append((time.perf_counter() - t) * 1000)
            vecs[name] = (docs, np.stack(qv))
            if rnd == 1:
                out[name] = {"chunks_per_s": round(len(texts) / batch_s, 1), "query_p50_ms": pct(lat, 0.5, 2), "query_p95_ms": pct(lat, 0.95, 2)}
                print(name, out[name], flush=True)
    torch_row, onnx_row = out["torch"], out["onnx"]
    assert isinstance(torch_row, dict) and isinstance(onnx_row, dict)
    out["onnx_vs_torch_chunks"] = round(onnx_row["chunks_per_s"] / torch_row["chunks_per_s"], 2)
    out["onnx_vs_torch_query_p50"] = round(torch_row["query_p50_ms"] / onnx_row["query_p50_ms"], 2)
    out["min_cosine_chunks"] = round(float((vecs["torch"][0] * vecs["onnx"][0]).sum(axis=1).min()), 6)
    out["min_cosine_queries"] = round(float((vecs["torch"][1] * vecs["onnx"][1]).sum(axis=1).min()), 6)
    print(json.dumps(out, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
