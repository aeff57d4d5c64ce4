"""The naive LangChain RAG chain, scored by the eval's own rules: the baseline qa-service has to beat.

What a developer writes in ten lines: RecursiveCharacterTextSplitter (1000 characters, 200 overlap), the same
MiniLM embedder into a Chroma collection, the top 3 chunks by similarity, LangChain's stock RAG prompt ("Use the
following pieces of retrieved context to answer the question ... three sentences maximum"), the same packaged LLM
through `ProtocolChatModel`, greedy. No dates, no passage selection, no grounding rules. Every answer is scored as
`qa-service eval` scores it (choice accuracy, contains-gold, token F1 of the whole answer; refusal = "don't know"),
and the document of each of the three chunks is checked against the gold article (Hits@3).

    python bench/naive_chain.py --questions ../shared/eval/realtimeqa-2023/dev.jsonl \
        --corpus ../shared/eval/realtimeqa-2023/corpus.jsonl --limit 100 --out bench/results/naive-rtqa.json
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

PROMPT = (
    "You are an assistant for question-answering tasks. Use the following pieces of retrieved context to answer the "
    "question. If you don't know the answer, just say that you don't know. Use three sentences maximum and keep the "
    "answer concise.\nQuestion: {question} \nContext: {context} \nAnswer:"
)
_DONT_KNOW = re.compile(r"\b(?:don'?t|do not) know\b", re.I)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--questions", type=Path, required=True)
    ap.add_argument("--corpus", type=Path, required=True)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--offset", type=int, default=0, help="skip this many questions first (held-out slices)")
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--chunk-size", type=int, default=1000)
    ap.add_argument("--overlap", type=int, default=200)
    ap.add_argument("--max-tokens", type=int, default=160)
    ap.add_argument("--out", type=Path, required=True, help="summary JSON (figures only)")
    ap.add_argument("--rows", type=Path, default=None, help="per-question answers; they quote articles, so keep them outside the repo")
    args = ap.parse_args()

    from qa_service.config import Settings, offline_environment

    offline_environment()
    import chromadb
    from langchain_core.output_parsers import StrOutputParser
    from langchain_core.prompts import ChatPromptTemplate
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    from qa_service.embedding import make_embedder
    from qa_service.eval import metrics as m
    from qa_service.llm import make_llm
    from qa_service.llm.langchain_adapter import ProtocolChatModel

    settings = Settings()
    questions = [json.loads(line) for line in args.questions.read_text().splitlines() if line.strip()]
    questions = questions[args.offset :][: args.limit]
    articles = [json.loads(line) for line in args.corpus.read_text().splitlines() if line.strip()]

    t0 = time.perf_counter()
    splitter = RecursiveCharacterTextSplitter(chunk_size=args.chunk_size, chunk_overlap=args.overlap)
    texts: list[str] = []
    doc_ids: list[str] = []
    for a in articles:
        body = f"{a.get('title') or ''}\n\n{a['text']}".strip()
        for piece in splitter.split_text(body):
            texts.append(piece)
            doc_ids.append(a["id"])
    embedder = make_embedder(settings)
    client = chromadb.EphemeralClient()
    col = client.create_collection("naive")
    for i in range(0, len(texts), 2000):
        part = texts[i : i + 2000]
        col.add(ids=[str(j) for j in range(i, i + len(part))], documents=part, embeddings=embedder.embed(part))
    ingest_s = time.perf_counter() - t0
    print(f"{len(articles)} articles, {len(texts)} chunks in {ingest_s:.0f} s", flush=True)

    chain = ChatPromptTemplate.from_messages([("human", PROMPT)]) | ProtocolChatModel(backend=make_llm(settings), max_tokens=args.max_tokens) | StrOutputParser()
    rows: list[dict[str, Any]] = []
    for n, q in enumerate(questions, 1):
        t = time.perf_counter()
        hit = col.query(query_embeddings=embedder.embed([q["question"]]), n_results=args.k)
        chunk_ids = [int(i) for i in hit["ids"][0]]
        context = "\n\n".join(texts[i] for i in chunk_ids)
        answer = chain.invoke({"question": q["question"], "context": context}).strip()
        answers = q.get("answers", [])
        row: dict[str, Any] = {
            "id": q.get("id"), "answer": answer, "seconds": round(time.perf_counter() - t, 2),
            "refused": float(bool(_DONT_KNOW.search(answer))),
            "hit3": float(q.get("doc_id") in {doc_ids[i] for i in chunk_ids}),
            "context_contains": m.contains(context, answers),
            "contains": m.contains(answer, answers), "f1": m.f1(answer, answers),
        }
        if q.get("choices"):
            picked = None if row["refused"] else m.choose(None, answer, q["choices"])
            row["choice_correct"] = float(picked is not None and m.exact_match(q["choices"][picked], answers) > 0)
        rows.append(row)
        print(f"{n}/{len(questions)} {row['seconds']:.1f}s choice={row.get('choice_correct')} contains={row['contains']}", flush=True)

    keys = ["choice_correct", "contains", "f1", "refused", "hit3", "context_contains"]
    summary: dict[str, Any] = {k: round(sum(r[k] for r in rows if k in r) / max(1, sum(k in r for r in rows)), 4) for k in keys}
    summary.update(
        n=len(rows), seconds_p50=m.percentile([r["seconds"] for r in rows], 50), seconds_p95=m.percentile([r["seconds"] for r in rows], 95),
        ingest_s=round(ingest_s, 1), chunks=len(texts),
    )
    config = {k: getattr(args, k) for k in ("k", "chunk_size", "overlap", "max_tokens", "offset", "limit")}
    config.update(questions=str(args.questions), corpus=str(args.corpus), llm_model=settings.llm_model)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"summary": summary, "config": config}, indent=2) + "\n")
    if args.rows:
        args.rows.write_text("".join(json.dumps(r) + "\n" for r in rows))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
