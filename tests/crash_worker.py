"""Ingest worker for the crash test: one revision of every article, in small batches, acknowledging each batch.

Usage: python -m tests.crash_worker DATA_DIR CORPUS.jsonl N_ARTICLES REVISION ACK_FILE
On open it checks every acknowledged article (prints VERIFY {...}); then it ingests, and writes an acknowledgement
line ("doc_id revision"), fsynced, only after ingest() has returned for the batch.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

from qa_service.config import Settings
from qa_service.ingest.loaders import Article, Loaded
from qa_service.schemas import Filters
from qa_service.service import QAService


def articles(corpus: str, n: int) -> list[dict[str, str]]:
    """Three corpus documents per article, so most articles span several chunks."""
    docs = [json.loads(line) for line in Path(corpus).read_text().splitlines()[: 3 * n]]
    return [{"id": f"crash-{i:03d}", "title": docs[3 * i]["title"], "text": "\n\n".join(d["text"] for d in docs[3 * i : 3 * i + 3])} for i in range(n)]


def revised(a: dict[str, str], revision: int) -> Article:
    return Article(id=a["id"], title=a["title"], text=f"{a['text']}\n\nRevision {revision} of this report.", source="crash-test")


def verify(svc: QAService, acked: dict[str, int], by_id: dict[str, dict[str, str]]) -> dict[str, int]:
    out: dict[str, int] = {"checked": 0, "lost": 0, "stale_revision": 0, "duplicate_chunks": 0, "missing_chunks": 0, "search_miss": 0}
    for doc_id, rev in acked.items():
        out["checked"] += 1
        doc = svc.store.get_document(doc_id)
        if doc is None:
            out["lost"] += 1
            continue
        m = re.search(r"Revision (\d+) of this report", doc.text)
        if not m or int(m.group(1)) < rev:
            out["stale_revision"] += 1
        stored = svc.store.chunk_ids_of(doc_id)
        out["duplicate_chunks"] += len(stored) - len(set(stored)) + len(set(stored) - set(doc.chunk_ids))
        missing = set(doc.chunk_ids) - set(stored)
        out["missing_chunks"] += len(missing)
        if missing:
            by_get = svc.store.chunks.get(ids=sorted(missing))["ids"]
            print(f"MISSING {doc_id} rev={m.group(1) if m else None} acked={rev} missing={sorted(missing)} by_id_get={by_get} all={stored}", file=sys.stderr, flush=True)
        first = by_id[doc_id]["text"].split(". ")[0]
        hits = svc.search(first[:300], 3, Filters(doc_id=doc_id))
        out["search_miss"] += not hits
    return out


def main() -> None:
    data_dir, corpus, n, revision, ack_path = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    items = articles(corpus, n)
    by_id = {a["id"]: a for a in items}
    svc = QAService(Settings(data_dir=Path(data_dir), collection="crash-news", hybrid=False), load_llm=False)
    print(f"OPEN recovered={svc.recovered_chunks} rebuilt={svc.rebuilt_chunks}", flush=True)
    acked: dict[str, int] = {}
    if Path(ack_path).exists():
        for line in Path(ack_path).read_text().splitlines():
            doc_id, rev = line.split()
            acked[doc_id] = max(acked.get(doc_id, 0), int(rev))
    print("VERIFY " + json.dumps(verify(svc, acked, by_id)), flush=True)
    with open(ack_path, "a") as ack:
        for i in range(0, len(items), 4):
            batch = items[i : i + 4]
            report = svc.ingest([Loaded(a["id"], revised(a, revision)) for a in batch])
            assert report.failed == 0, report
            ack.write("".join(f"{a['id']} {revision}\n" for a in batch))
            ack.flush()
            os.fsync(ack.fileno())
    print("DONE", flush=True)


if __name__ == "__main__":
    main()
