"""Ingest throughput, three ways on the same corpus in one run (so machine noise cancels):

1. the encoder ceiling: sentence-transformers `encode` (torch) on exactly the chunk texts qa-service produces, and
   qa-service's own encoder (int8 onnxruntime by default) on the same texts;
2. qa-service's pipeline (parse -> chunk -> embed -> Chroma, content hashes, document records);
3. a naive LangChain pipeline: RecursiveCharacterTextSplitter + HuggingFaceEmbeddings + Chroma.from_documents.

    pip install --no-deps langchain-chroma==1.1.0 langchain-huggingface==1.2.3   # only for (3)
    python bench/ingest.py --corpus ../shared/eval/qamr-wikinews/corpus.jsonl --out bench/results/ingest.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=ROOT.parent / "shared/eval/qamr-wikinews/corpus.jsonl")
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/ingest.json")
    args = ap.parse_args()
    from qa_service.config import offline_environment

    offline_environment()

    from qa_service.config import Settings
    from qa_service.embedding import SentenceTransformerEmbedder, make_embedder
    from qa_service.ingest.loaders import load_paths
    from qa_service.ingest.pipeline import IngestPipeline
    from qa_service.models import resolve_embedder
    from qa_service.store.chroma import ChromaStore, make_client

    settings = Settings()
    embedder = make_embedder(settings)
    torch_encoder = SentenceTransformerEmbedder(settings.embedding_model, batch_size=settings.embedding_batch_size, backend="torch")
    items = list(load_paths([args.corpus]))
    docs = len([i for i in items if i.article])
    results: dict[str, object] = {"corpus": str(args.corpus), "documents": docs, "chunk_size": settings.chunk_size, "batch_size": settings.embedding_batch_size}

    with tempfile.TemporaryDirectory() as tmp:
        pipeline = IngestPipeline(ChromaStore(make_client(f"{tmp}/probe", None), "probe"), embedder, settings)
        texts = [c.text for i in items if i.article for c in pipeline.chunk(i.article)]
        timed: dict[str, float] = {}
        for name, enc in (("torch", torch_encoder), ("default", embedder)):
            enc.embed(texts[:64])  # warm-up
            t = time.perf_counter()
            enc.embed(texts)
            timed[name] = time.perf_counter() - t
        ceiling = timed["torch"]
        results["encoder_ceiling"] = {
            "what": "sentence-transformers encode (torch)",
            "seconds": round(ceiling, 2), "chunks": len(texts), "chunks_per_s": round(len(texts) / ceiling, 1), "docs_per_s": round(docs / ceiling, 1),
        }
        results["default_encoder"] = {
            "what": f"qa-service's encoder alone, as configured ({embedder.backend}"
            + (f"; batches of {embedder.bulk_threshold}+ via torch)" if embedder.bulk_threshold else ")"),
            "seconds": round(timed["default"], 2), "chunks_per_s": round(len(texts) / timed["default"], 1),
        }

        store = ChromaStore(make_client(f"{tmp}/qa", None), "bench", write_batch=settings.write_batch_size)
        pipeline = IngestPipeline(store, embedder, settings)
        t = time.perf_counter()
        report = pipeline.ingest(load_paths([args.corpus]))  # parsing included, as `qa-service ingest` does it
        ours = time.perf_counter() - t
        results["qa_service"] = {
            "seconds": round(ours, 2), "chunks": report.chunks_written, "chunks_per_s": round(report.chunks_written / ours, 1),
            "docs_per_s": round(report.added / ours, 1), "vs_ceiling": round(ceiling / ours, 3),
            "vs_default_encoder": round(timed["default"] / ours, 3),
        }
        t = time.perf_counter()
        again = pipeline.ingest(load_paths([args.corpus]))
        results["qa_service_reingest"] = {"seconds": round(time.perf_counter() - t, 2), "unchanged": again.unchanged, "chunks_written": again.chunks_written}

        try:
            from langchain_chroma import Chroma
            from langchain_core.documents import Document
            from langchain_huggingface import HuggingFaceEmbeddings
            from langchain_text_splitters import RecursiveCharacterTextSplitter
        except ImportError as exc:
            results["naive_langchain"] = {"skipped": f"{exc}; see the install line in this script's docstring"}
        else:
            t = time.perf_counter()
            raw = [json.loads(line) for line in args.corpus.read_text().splitlines() if line.strip()]
            splitter = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=120)
            pieces = splitter.split_documents([Document(page_content=d["text"], metadata={"id": d["id"], "title": d["title"]}) for d in raw])
            hf = HuggingFaceEmbeddings(model_name=str(resolve_embedder(settings.embedding_model)), encode_kwargs={"normalize_embeddings": True})
            Chroma.from_documents(pieces, hf, persist_directory=f"{tmp}/naive", collection_name="naive")
            naive = time.perf_counter() - t
            results["naive_langchain"] = {
                "seconds": round(naive, 2), "chunks": len(pieces), "chunks_per_s": round(len(pieces) / naive, 1), "docs_per_s": round(docs / naive, 1),
                "note": "1000-character chunks (its default-style splitter), so fewer, longer chunks than ours",
            }
            results["qa_service_vs_naive_docs_per_s"] = round((report.added / ours) / (docs / naive), 2)
    print(json.dumps(results, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
