"""/v1/search latency at several store sizes, dense-only and hybrid, with RSS and disk at each scale.

The synthetic corpus is made of real sentences from QAMR-Wikinews shuffled into 3-sentence chunks. Vectors are
computed for the distinct sentences once and combined (mean of the sentence vectors, normalised), so the store
is realistic in distribution without hours of encoding. Queries are real dev questions, through the HTTP app
served by uvicorn on 127.0.0.1 (a keep-alive httpx client).

    python bench/retrieval.py --sizes 10000 100000 --out bench/results/retrieval.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
from stats import served  # bench/ is on sys.path when a script runs

from qa_service.eval.metrics import percentile

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared/eval/qamr-wikinews"


def dir_mb(path: Path) -> float:
    return round(sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20, 1)



RESTART = """
import json, sys, time
from pathlib import Path
from qa_service.config import Settings
from qa_service.embedding import SentenceTransformerEmbedder
from qa_service.service import QAService
from qa_service.store.base import Where
embedder = SentenceTransformerEmbedder("all-MiniLM-L6-v2")
t = time.perf_counter()
svc = QAService(Settings(data_dir=Path(sys.argv[1]), collection="scale-news"), embedder=embedder, load_llm=False)
opened = time.perf_counter() - t
t = time.perf_counter()
svc.retriever.search("Who led the talks?", 5, Where())
print(json.dumps({"open_s": round(opened, 2), "first_hybrid_query_ms": round((time.perf_counter() - t) * 1000, 1)}))
"""


def restart(data_dir: Path) -> dict[str, float]:
    """A fresh process on the same store: Chroma reopens its index, BM25 loads its file and diffs ids."""
    out = subprocess.run([sys.executable, "-c", RESTART, str(data_dir)], capture_output=True, text=True, check=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/retrieval.json")
    ap.add_argument("--keep", type=Path, help="build the stores under this directory and keep them; a later run reuses a store of the same size")
    args = ap.parse_args()
    from qa_service.config import offline_environment

    offline_environment()

    import httpx

    from qa_service.api.app import create_app
    from qa_service.config import Settings
    from qa_service.embedding import SentenceTransformerEmbedder
    from qa_service.service import QAService
    from qa_service.store.base import ChunkRecord, Where
    from qa_service.text import sentences

    corpus = [json.loads(line) for line in (SHARED / "corpus.jsonl").read_text().splitlines()]
    sents = sorted({d["text"][s:e].strip() for d in corpus for s, e in sentences(d["text"]) if len(d["text"][s:e].split()) >= 4})
    questions = [json.loads(line)["question"] for line in (SHARED / "dev.jsonl").read_text().splitlines()][: args.queries]
    embedder = SentenceTransformerEmbedder("all-MiniLM-L6-v2")
    t = time.perf_counter()
    sent_vecs = embedder.embed(sents)
    print(f"{len(sents)} distinct sentences embedded in {time.perf_counter() - t:.0f} s")
    rng = random.Random(7)
    proc = psutil.Process()
    results = []
    for size in args.sizes:
        tmp = args.keep / f"scale-{size}" if args.keep else Path(tempfile.mkdtemp(prefix=f"qa-scale-{size}-"))
        s = Settings(data_dir=tmp / "store", collection="scale-news", rate_limit_per_minute=0)
        svc = QAService(s, embedder=embedder, load_llm=False)
        reused = svc.store.count_chunks() >= size
        if not reused:
            svc.store.reset()
        elif late := [c for d in range(25) for c in svc.store.chunk_ids_of(f"late-{d}")]:
            svc.store.delete_chunks(late)  # a kept store from an earlier run: its late bulletins go, and come again below
        t = time.perf_counter()
        batch: list[ChunkRecord] = []
        vecs: list[np.ndarray] = []
        for i in range(0 if reused else size):
            pick = rng.sample(range(len(sents)), 3)
            text = " ".join(sents[j] for j in pick)
            v = sent_vecs[pick].mean(axis=0)
            vecs.append(v / np.linalg.norm(v))
            doc = f"synth-{i // 4:07d}"
            batch.append(ChunkRecord(chunk_id=f"{doc}#{i:08d}", doc_id=doc, text=text, index=i % 4, start=0, end=len(text),
                                     title=re.sub(r"\W+", " ", sents[pick[0]])[:60], source=rng.choice(["Wikinews", "Wire", "Gazette"]),
                                     url=None, published_at=f"20{rng.randint(10, 24)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}", content_hash="synthetic"))
            if len(batch) == 5000:
                if i % 100_000 < 5000:
                    print(f"  {i:,} chunks inserted, {time.perf_counter() - t:.0f} s", flush=True)
                svc.store.upsert_chunks(batch, np.stack(vecs))
                batch, vecs = [], []
        if batch:
            svc.store.upsert_chunks(batch, np.stack(vecs))
        load_s = time.perf_counter() - t
        row: dict[str, object] = {"chunks": svc.store.count_chunks()}
        row.update({"reused_store": True} if reused else {"load_s": round(load_s, 1), "insert_chunks_per_s": round(size / load_s)})
        for hybrid in (False, True):
            svc.settings = s.model_copy(update={"hybrid": hybrid})
            svc.retriever.settings = svc.settings
            embedder._queries.clear()  # noqa: SLF001 - both passes embed every query afresh
            with served(create_app(svc.settings, service=svc)) as url, httpx.Client(base_url=url, timeout=60) as client:
                t = time.perf_counter()
                # no timeout here: on a store just built, the first query pays for index work (minutes at 1M)
                client.post("/v1/search", json={"query": "warm up the index"}, timeout=None)
                first_ms = (time.perf_counter() - t) * 1000
                lat = []
                for q in questions:
                    t = time.perf_counter()
                    r = client.post("/v1/search", json={"query": q, "top_k": 5})
                    lat.append((time.perf_counter() - t) * 1000)
                    assert r.status_code == 200, r.text
            row["hybrid" if hybrid else "dense"] = {"p50_ms": percentile(lat, 50, 2), "p95_ms": percentile(lat, 95, 2), "first_query_ms": round(first_ms, 1)}
        row["rss_mb"] = round(proc.memory_info().rss / 2**20)
        row["disk_mb"] = dir_mb(tmp)
        row["bm25_file_mb"] = dir_mb(tmp / "store" / "lexical")
        # the BM25 side after a write and after a restart: a delta, and a load from disk, never a rebuild
        extra = [ChunkRecord(chunk_id=f"late#{i:04d}", doc_id=f"late-{i // 4}", text=f"Late bulletin {i}: {sents[i]}", index=i % 4, start=0,
                             end=0, title="Late bulletin", content_hash="synthetic") for i in range(100)]
        svc.store.upsert_chunks(extra, sent_vecs[:100])
        t = time.perf_counter()
        svc.retriever.search("Late bulletin harbour", 5, Where())
        row["hybrid_query_after_100_new_chunks_ms"] = round((time.perf_counter() - t) * 1000, 1)
        row["restart"] = restart(tmp / "store")
        print(json.dumps(row))
        results.append(row)
        svc.close()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    out = {"machine": {"cpus": os.cpu_count(), "ram_gb": round(psutil.virtual_memory().total / 2**30, 1)}, "queries": len(questions), "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
