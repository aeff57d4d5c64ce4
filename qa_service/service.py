"""QAService: ask / chat / search / ingest / documents. The API, the CLI and the eval runner all call this."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from qa_service import citations as cit
from qa_service.config import Settings
from qa_service.embedding import Embedder, make_embedder
from qa_service.errors import BadRequest, NotFound
from qa_service.generation import Generator, Passage, Prompts, select_passages
from qa_service.ingest.loaders import Loaded
from qa_service.ingest.pipeline import IngestPipeline, Progress
from qa_service.llm import StreamingLLM, make_llm
from qa_service.retrieval import Retrieved, Retriever, where_from
from qa_service.schemas import (
    AskResponse,
    ChatMessage,
    Citation,
    DocumentDetail,
    DocumentInfo,
    DocumentList,
    Filters,
    IngestReport,
    Quote,
    SearchResult,
    Timings,
)
from qa_service.store.base import DocRecord
from qa_service.store.chroma import ChromaStore, make_client
from qa_service.store.lexical import LexicalIndex
from qa_service.store.writer_lock import WriterLock

log = logging.getLogger(__name__)


@dataclass
class StreamEvent:
    event: str  # "token" | "done"
    data: Any


class QAService:
    def __init__(self, settings: Settings, *, embedder: Embedder | None = None, llm: StreamingLLM | None = None, load_llm: bool = True) -> None:
        self.settings = settings
        self.embedder = embedder or make_embedder(settings)
        self.store = ChromaStore(
            make_client(str(settings.data_dir), settings.chroma_url), settings.collection, write_batch=settings.write_batch_size
        )
        self.lexical = LexicalIndex(
            self.store, k1=settings.bm25_k1, b=settings.bm25_b, path=settings.data_dir / "lexical" / f"{settings.collection}.npz"
        )
        self.retriever = Retriever(self.store, self.embedder, self.lexical, settings)
        self.pipeline = IngestPipeline(self.store, self.embedder, settings)
        self.prompts = Prompts.load(settings.prompts_dir)
        self.writer = WriterLock(settings.data_dir / ".writer.lock")
        with self.writer.hold():
            self.recovered_chunks = self.pipeline.recover()
        self._llm = llm
        self._llm_lock = threading.Lock()
        self._generator: Generator | None = None
        if load_llm:
            self.generator.warmup()

    @property
    def generator(self) -> Generator:
        with self._llm_lock:
            if self._generator is None:
                llm = self._llm or make_llm(self.settings)
                self._llm = llm
                s = self.settings
                self._generator = Generator(llm, self.prompts, max_tokens=s.llm_max_tokens, context_tokens=s.context_tokens, context=min(s.llm_context, llm.context))
            return self._generator

    def close(self) -> None:
        self.lexical.flush()
        if self._llm is not None:
            self._llm.close()

    # ingest and documents
    def ingest(self, items: Iterable[Loaded], progress: Progress | None = None) -> IngestReport:
        with self.writer.hold():
            return self.pipeline.ingest(items, progress)

    def delete(self, doc_id: str) -> None:
        with self.writer.hold():
            if not self.pipeline.delete(doc_id):
                raise NotFound(f"no document {doc_id!r}")

    @staticmethod
    def _info(d: DocRecord) -> dict[str, Any]:
        return {
            "doc_id": d.doc_id,
            "title": d.title,
            "source": d.source,
            "url": d.url,
            "published_at": d.published_at,
            "author": d.author,
            "chunks": len(d.chunk_ids),
            "content_hash": d.content_hash,
            "chars": len(d.text),
        }

    def list_documents(self, offset: int = 0, limit: int = 50) -> DocumentList:
        docs, total = self.store.list_documents(offset, limit)
        return DocumentList(documents=[DocumentInfo(**self._info(d)) for d in docs], total=total, offset=offset, limit=limit)

    def get_document(self, doc_id: str) -> DocumentDetail:
        d = self.store.get_document(doc_id)
        if d is None:
            raise NotFound(f"no document {doc_id!r}")
        return DocumentDetail(**self._info(d), text=d.text)

    # retrieval
    def _k(self, top_k: int | None) -> int:
        k = top_k or self.settings.top_k
        if k > self.settings.max_top_k:
            raise BadRequest(f"top_k must be at most {self.settings.max_top_k}")
        return k

    def _check_question(self, text: str, field: str = "question") -> str:
        text = text.strip()
        if not text:
            raise BadRequest(f"{field} is empty")
        if len(text) > self.settings.max_question_chars:
            raise BadRequest(f"{field} has {len(text)} characters; the limit is {self.settings.max_question_chars}", code="question_too_long")
        return text

    def search(self, query: str, top_k: int | None = None, filters: Filters | None = None) -> list[SearchResult]:
        query = self._check_question(query, "query")
        hits = self.retriever.search(query, self._k(top_k), where_from(filters))
        return [
            SearchResult(
                chunk_id=h.chunk.chunk_id,
                doc_id=h.chunk.doc_id,
                title=h.chunk.title,
                source=h.chunk.source,
                url=h.chunk.url,
                published_at=h.chunk.published_at,
                text=h.chunk.text,
                score=round(h.score, 6),
                start=h.chunk.start,
                end=h.chunk.end,
            )
            for h in hits
        ]

    # answering
    def ask(self, question: str, top_k: int | None = None, filters: Filters | None = None) -> AskResponse:
        return final_answer(self.ask_stream(question, top_k, filters))

    def ask_stream(
        self, question: str, top_k: int | None = None, filters: Filters | None = None, *, asked: str | None = None
    ) -> Iterator[StreamEvent]:
        t0 = time.perf_counter()
        question = self._check_question(question)
        k = self._k(top_k)
        gen = self.generator
        budget = gen.passage_budget(question)
        hits = self.retriever.search(question, k, where_from(filters))
        passages = select_passages(question, hits, self.embedder, budget, self.lexical.term_weights) if hits else []
        t1 = time.perf_counter()
        first_token: float | None = None
        raw = ""
        if passages and self._worth_asking(question, hits, passages):
            visible = _AnswerFilter()
            for delta in gen.stream(question, passages):
                if first_token is None:
                    first_token = time.perf_counter()
                raw += delta
                out = visible.feed(delta)
                if out:
                    yield StreamEvent("token", out)
            tail = visible.flush()
            if tail:
                yield StreamEvent("token", tail)
        t2 = time.perf_counter()
        resp = self._finish(raw, passages, question)
        resp.timings = Timings(
            retrieve_ms=round((t1 - t0) * 1000, 1),
            generate_ms=round((t2 - t1) * 1000, 1),
            total_ms=round((time.perf_counter() - t0) * 1000, 1),
            first_token_ms=round((first_token - t0) * 1000, 1) if first_token else None,
        )
        if asked is not None:
            resp.question = asked
        if not raw:
            yield StreamEvent("token", resp.answer)
        yield StreamEvent("done", resp)

    def _worth_asking(self, question: str, hits: list[Retrieved], passages: list[Passage]) -> bool:
        """Call the LLM when a passage is close in meaning, or names everything the question names (an acronym
        such as "ATSB" embeds poorly but matches exactly)."""
        if max(h.similarity for h in hits) >= self.settings.min_similarity:
            return True
        return bool(cit.key_terms(question)) and not cit.missing_key_terms(question, " ".join(p.text for p in passages))

    def _finish(self, raw: str, passages: list[Passage], question: str) -> AskResponse:
        body, short = cit.split_output(raw)
        answer, cited = cit.resolve_markers(body, len(passages))
        short = cit.unechoed(short, answer, question)
        empty = Timings(retrieve_ms=0, generate_ms=0, total_ms=0)
        refused = not passages or not answer or cit.is_refusal(answer) or (short is not None and cit.is_refusal(short))
        prose = cit.strip_markers(answer).strip()
        words = len(prose.split())
        if not refused and short is None and 0 < words <= 6:
            short = prose.rstrip(".").strip() or None
        if not refused and short is None and words > 25:
            refused = True  # no short answer and a copied passage instead of a sentence: the model found none
        if not refused and short:
            # the short answer must stand in a cited passage; else cite the passage that holds it
            supports = {p.n: cit.support(short, p.text) for p in passages}
            if not any(supports[n] >= 0.99 for n in cited):
                best = max(supports, key=lambda n: supports[n])
                if supports[best] >= 0.99:
                    # the model cited the wrong passage: point the markers at the one that holds the answer
                    cited = [best]
                    answer = f"{prose[:-1].rstrip()} [{best}]." if prose.endswith(".") else f"{prose} [{best}]"
                elif not cited or max(supports[n] for n in cited) < 0.5:
                    short = None
        if not refused and not cited:
            # no marker and no short answer that a passage holds: the answer is not grounded
            best_n = max(passages, key=lambda p: cit.support(answer, p.text))
            if cit.support(answer, best_n.text) >= 0.6:
                cited = [best_n.n]
                answer = f"{answer.rstrip()} [{best_n.n}]"
            else:
                refused = True
        if not refused and self.settings.strict_grounding:
            chunk_text = {p.n: p.hit.chunk.text for p in passages}
            if cit.grounding(answer, question, " ".join(chunk_text[n] for n in cited)) < 0.5:
                refused = True  # the answer says things its cited passages do not
            elif cit.missing_key_terms(question, " ".join(chunk_text.values())):
                refused = True  # the question names something no retrieved passage mentions
            elif cit.lacks_quantity(question, f"{answer} {short or ''}"):
                refused = True  # asked for a quantity, answered without one
        if refused:
            return AskResponse(answer=cit.REFUSAL_TEXT, short_answer=None, refused=True, citations=[], timings=empty)
        by_n = {p.n: p for p in passages}
        docs = self.store.get_documents(sorted({by_n[n].hit.chunk.doc_id for n in cited}))
        out: list[Citation] = []
        evidence = [e for e in (short, cit.strip_markers(answer)) if e]
        for n in cited:
            p = by_n[n]
            c = p.hit.chunk
            doc = docs.get(c.doc_id)
            quote = None
            if doc is not None:
                span = None
                for s, e in p.spans:
                    span = cit.locate_quote(doc.text, s, e, evidence) if short and cit.support(short, doc.text[s:e]) >= 0.99 else None
                    if span:
                        break
                span = span or cit.locate_quote(doc.text, c.start, c.end, evidence)
                if span:
                    quote = Quote(text=doc.text[span[0] : span[1]], start=span[0], end=span[1])
            out.append(
                Citation(n=n, doc_id=c.doc_id, chunk_id=c.chunk_id, title=c.title, source=c.source, url=c.url, published_at=c.published_at, text=c.text, quote=quote)
            )
        return AskResponse(answer=answer, short_answer=short, refused=False, citations=out, timings=empty)

    # chat
    def standalone_question(self, messages: list[ChatMessage]) -> str:
        turns = [m for m in messages if m.role != "system"]
        if not turns or turns[-1].role != "user":
            raise BadRequest("the last message must come from the user")
        last = self._check_question(turns[-1].content)
        history = turns[:-1][-6:]
        if not history or not needs_context(last):
            return last
        lines = "\n".join(f"{m.role}: {m.content[:400]}" for m in history)
        rewritten = self.generator.condense(lines, last).splitlines()
        text = (rewritten[0] if rewritten else "").strip().strip('"')
        return text if 3 <= len(text) <= self.settings.max_question_chars else last

    def chat_stream(self, messages: list[ChatMessage], top_k: int | None = None, filters: Filters | None = None) -> Iterator[StreamEvent]:
        question = self.standalone_question(messages)
        yield from self.ask_stream(question, top_k, filters, asked=question)


def final_answer(events: Iterable[StreamEvent]) -> AskResponse:
    """Run a stream to its end; the answer is its `done` event."""
    final: AskResponse | None = None
    for ev in events:
        if ev.event == "done":
            final = ev.data
    assert final is not None
    return final


_ANAPHORA = re.compile(
    r"\b(he|she|they|it|its|his|her|hers|him|them|their|theirs|this|that|these|those|there|then|the same|the other|the former|the latter)\b"
    r"|^(and|but|also|so|what about|how about|and what|why|how come)\b|^(when|where|why|how|who)\W*$",
    re.IGNORECASE,
)


def needs_context(question: str) -> bool:
    """Only a follow-up that leans on the history (a pronoun, "and where...?") is rewritten; a standalone question is
    asked as typed: rewriting it cost a model call and, measured, could change its meaning ("Kremlin" became "Russian")."""
    return bool(_ANAPHORA.search(question.strip())) or len(question.split()) <= 2


class _AnswerFilter:
    """Streams the prose answer and holds back the trailing SHORT: line, which is metadata, not prose."""

    def __init__(self) -> None:
        self.buf = ""
        self.hidden = False
        self.started = False

    def feed(self, delta: str) -> str:
        if self.hidden:
            return ""
        self.buf += delta
        if not self.started:
            stripped = self.buf.lstrip(" *")
            if len(stripped) < 7 and "answer:".startswith(stripped.lower()):
                return ""
            self.buf = cit.ANSWER_PREFIX.sub("", self.buf, count=1)
            self.started = True
        out = ""
        while "\n" in self.buf:
            line, self.buf = self.buf.split("\n", 1)
            if _is_short(line):
                self.hidden = True
                self.buf = ""
                return out
            out += line + "\n"
        if self.buf and not _maybe_short(self.buf):
            out += self.buf
            self.buf = ""
        return out

    def flush(self) -> str:
        if self.hidden or _is_short(self.buf):
            return ""
        out, self.buf = self.buf, ""
        return out


def _is_short(line: str) -> bool:
    return bool(re.match(r"^\s*\**\s*short", line, re.IGNORECASE))


def _maybe_short(partial: str) -> bool:
    p = partial.lstrip(" *").lower()
    return "short:".startswith(p[:6]) or p.startswith("short")
