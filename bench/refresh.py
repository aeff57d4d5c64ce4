"""Source refresh throughput: a feed of 500 articles served by a local HTTP server, ingested through the sources
path (fetch, parse, extract, chunk, embed, store), two ways in one run:

1. `feed-text`: the feed carries each article's full text (content:encoded): one fetch, then ingest;
2. `pages`: the feed carries links only: every page is fetched (QA_FETCH_CONCURRENCY at once, no host delay on
   loopback) and extracted with trafilatura, then ingested.

Each is refreshed three times: the first adds everything, the second is a conditional GET answered 304, the third
re-reads a changed feed whose pages are unchanged (every page answers 304 to its ETag).
Articles: the first 500 of 400+ characters in the QAMR Wikinews corpus (CC BY 2.5), read at run time, never stored in the repo.

    python bench/refresh.py --out bench/results/refresh.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def feed(docs: list[dict[str, Any]], way: str, version: int) -> Any:
    from tests.site import Page, rss

    items = []
    for i, d in enumerate(docs):
        item = {"title": d.get("title") or f"Article {i}", "link": f"/a/{i}", "date": f"Mon, 0{1 + i % 9} Jun 2026 10:00:00 GMT"}
        if way == "feed-text":
            item["content"] = "".join(f"<p>{p}</p>" for p in d["text"].split("\n") if p.strip())
        items.append(item)
    return Page(rss(items), "application/rss+xml", etag=f'"{way}-{version}"')


def run_way(way: str, docs: list[dict[str, Any]], site: Any, data_dir: Path) -> dict[str, Any]:
    """Three refreshes of one feed into a fresh store: first (all added), 304, changed feed with unchanged pages."""
    from qa_service.config import Settings
    from qa_service.schemas import SourceIn
    from qa_service.service import QAService

    site.routes[f"/{way}.xml"] = feed(docs, way, 1)
    settings = Settings(data_dir=data_dir, collection="bench", fetch_allow_private=True, fetch_host_delay_s=0.0, sources_schedule=False)
    svc = QAService(settings, load_llm=False)
    rounds = []
    t = time.perf_counter()
    first = svc.sources.add(SourceIn(url=site.url(f"/{way}.xml")))
    rounds.append(("first", time.perf_counter() - t, first))
    t = time.perf_counter()
    second = svc.sources.refresh(first.source.id)
    rounds.append(("not modified", time.perf_counter() - t, second))
    site.routes[f"/{way}.xml"] = feed(docs, way, 2)
    t = time.perf_counter()
    third = svc.sources.refresh(first.source.id)
    rounds.append(("feed changed, pages not", time.perf_counter() - t, third))
    out = []
    for name, seconds, r in rounds:
        row = {"refresh": name, "seconds": round(seconds, 3), "added": r.report.added, "updated": r.report.updated,
               "unchanged": r.report.unchanged, "failed": r.report.failed, "articles_per_s": round(len(docs) / seconds, 1)}
        out.append(row)
        print(f"{way:10s} {name:24s} {seconds:8.3f} s  {row['articles_per_s']:9.1f} articles/s  added {r.report.added} "
              f"unchanged {r.report.unchanged} failed {r.report.failed}")
    chunks = sum(d.chunks for d in svc.list_documents(0, 500).documents)
    svc.close()
    return {"chunks": chunks, "rounds": out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=ROOT.parent / "shared/eval/qamr-wikinews/corpus.jsonl")
    ap.add_argument("--items", type=int, default=500)
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results/refresh.json")
    args = ap.parse_args()
    from qa_service.config import offline_environment

    offline_environment()
    from tests.site import Page, Site, article_html

    # articles long enough to count as full text in a feed (feeds.FULL_TEXT_CHARS) and as an article on a page
    docs = [d for d in map(json.loads, args.corpus.open()) if len(d["text"]) >= 400][: args.items]
    results: dict[str, Any] = {"command": "python bench/refresh.py", "items": len(docs), "corpus": str(args.corpus), "cpu": platform.machine(), "runs": {}}
    site = Site()
    with site.running(), tempfile.TemporaryDirectory() as tmp:
        for i, d in enumerate(docs):
            paragraphs = [p for p in d["text"].split("\n") if p.strip()]
            site.routes[f"/a/{i}"] = Page(article_html(d.get("title") or f"Article {i}", paragraphs), etag=f'"a{i}"')
        for way in ("feed-text", "pages"):
            results["runs"][way] = run_way(way, docs, site, Path(tmp) / way)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
