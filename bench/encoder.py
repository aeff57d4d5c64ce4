"""The encoder through torch (sentence-transformers `encode`) and through onnxruntime (the exported model, fp32 and
int8 — the one qa-service uses by default), on the same texts in one run: chunk batches, single queries, and how
close the vectors are to torch's.

    python bench/encoder.py --out bench/results/encoder.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from qa_service.eval.metrics import percentile

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared/eval/qamr-wikinews"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chunks", type=int, default=600)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/encoder.json")
    args = ap.parse_args()
    from qa_service.config import offline_environment

    offline_environment()

    from qa_service.config import Settings
    from qa_service.embedding import SentenceTransformerEmbedder
    from qa_service.ingest.loaders import load_paths
    from qa_service.ingest.pipeline import IngestPipeline
    from qa_service.store.chroma import ChromaStore, make_client

    s = Settings()
    articles = [i.article for i in load_paths([SHARED / "corpus.jsonl"]) if i.article is not None]
    engines = {
        b: SentenceTransformerEmbedder(s.embedding_model, batch_size=s.embedding_batch_size, backend=b, bulk_threshold=0, cache_dir=s.model_cache_dir)
        for b in ("torch", "onnx", "onnx-int8")
    }
    pipeline = IngestPipeline(ChromaStore(make_client(tempfile.mkdtemp(prefix="qa-encoder-"), None), "probe"), engines["torch"], s)
    texts = [c.text for a in articles for c in pipeline.chunk(a)][: args.chunks]
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
                out[name] = {"chunks_per_s": round(len(texts) / batch_s, 1), "query_p50_ms": percentile(lat, 50, 2), "query_p95_ms": percentile(lat, 95, 2)}
                print(name, out[name], flush=True)
    torch_row = out["torch"]
    assert isinstance(torch_row, dict)
    for name in ("onnx", "onnx-int8"):
        row = out[name]
        assert isinstance(row, dict)
        row["chunks_vs_torch"] = round(row["chunks_per_s"] / torch_row["chunks_per_s"], 2)
        row["query_p50_vs_torch"] = round(torch_row["query_p50_ms"] / row["query_p50_ms"], 2)
        for i, what in enumerate(("chunks", "queries")):
            cos = (vecs["torch"][i] * vecs[name][i]).sum(axis=1)
            row[f"cosine_to_torch_{what}"] = {"min": round(float(cos.min()), 6), "mean": round(float(cos.mean()), 6)}
    print(json.dumps(out, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
