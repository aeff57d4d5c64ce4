"""QAService: ask / chat / search / ingest / documents. The API, the CLI and the eval runner all call this."""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from qa_service.citations import AnswerFilter, Verdict, cite
from qa_service.compose import AnswerCalibration, Composed, answer_logprob, calibrated, extractive, with_reader
from qa_service.config import Settings
from qa_service.embedding import Embedder, make_embedder
from qa_service.errors import BadRequest, NotEnabled, NotFound
from qa_service.generation import Generator, Prompts, needs_context
from qa_service.grounding import ground, missing_key_terms, refusal, worth_asking
from qa_service.ingest.loaders import Loaded
from qa_service.ingest.pipeline import IngestPipeline, Progress
from qa_service.llm import StreamingLLM, make_llm
from qa_service.llm.base import Piece
from qa_service.metrics import RETRIES, observe_answer, observe_ingest, observe_outcome
from qa_service.passages import Passage, ReaderHelp, select_passages
from qa_service.reading import Read, Reader, evidence, first_answer, load_reader, read, rerank
from qa_service.retrieval import Retrieved, Retriever, where_from
from qa_service.schemas import (
    AskResponse,
    ChatMessage,
    DocumentDetail,
    DocumentInfo,
    DocumentList,
    Filters,
    IngestReport,
    Mode,
    SearchResult,
    Timings,
)
from qa_service.store import open_store
from qa_service.store.base import DocRecord, Store
from qa_service.store.lexical import LexicalIndex
from qa_service.store.writer_lock import WriterLock
from qa_service.timeframe import AsOf, TimeFrame, dated, frame

if TYPE_CHECKING:
    from qa_service.sources import Sources

log = logging.getLogger(__name__)


@dataclass
class StreamEvent:
    event: str  # "token" | "retry" (the tokens so far are withdrawn; data: the refusal's reason) | "done"
    data: Any


@dataclass
class Plan:
    """What retrieval and reading found for a question, and whether the LLM is to be asked."""

    passages: list[Passage]
    reads: list[Read]  # empty without the reader
    top: Read | None  # the first reranked read whose span clears QA_READER_MIN_SCORE
    ask_llm: bool
    by_reader: bool = True  # the reader chose the evidence and composes the answer (QA_READER, extractive mode)
    hits: list[Retrieved] = field(default_factory=list)  # what the passages were chosen from (default path)


class QAService:
    def __init__(
        self, settings: Settings, *, embedder: Embedder | None = None, llm: StreamingLLM | None = None, load_llm: bool = True, parent: QAService | None = None
    ) -> None:
        """`parent`: another collection's service whose encoder, reader, LLM and writer lock this one shares."""
        self.settings = settings
        self.parent = parent
        self.embedder: Embedder = parent.embedder if parent else embedder or make_embedder(settings)
        self.store: Store = open_store(settings)
        self.lexical = LexicalIndex(
            self.store, k1=settings.bm25_k1, b=settings.bm25_b, path=settings.data_dir / "lexical" / f"{settings.collection}.npz"
        )
        self.retriever = Retriever(self.store, self.embedder, self.lexical, settings)
        self.pipeline = IngestPipeline(self.store, self.embedder, settings)
        self.prompts = Prompts.load(settings.prompts_dir)
        self.reader: Reader | None = parent.reader if parent else load_reader(settings.reader_model, settings.threads) if settings.loads_reader else None
        self.answer_calibration: AnswerCalibration | None = (
            parent.answer_calibration if parent else AnswerCalibration.load(settings.answer_calibration) if settings.answer_calibration else None
        )
        self.writer: WriterLock = parent.writer if parent else WriterLock(settings.data_dir / ".writer.lock")
        with self.writer.hold():
            self.rebuilt_chunks = 0
            if not self.store.chunks_readable():
                log.warning("collection %s: the chunk index cannot be read; making it again from the stored documents", settings.collection)
                self.rebuilt_chunks = self.pipeline.rebuild()
                log.warning("collection %s: %d chunks made again", settings.collection, self.rebuilt_chunks)
            self.recovered_chunks = self.pipeline.recover()
            self.reembedded_chunks = self.pipeline.match_encoder(settings.encoder_change)
            if self.reembedded_chunks:
                log.warning("collection %s: %d chunks embedded again with the encoder %s", settings.collection, self.reembedded_chunks, self.embedder.identity)
            self.store.upgrade()
        self._llm = llm
        self._llm_lock = threading.Lock()
        self._generator: Generator | None = None
        if load_llm:
            self.generator.warmup()

    @property
    def generator(self) -> Generator:
        if self.parent is not None:
            return self.parent.generator
        with self._llm_lock:
            if self._generator is None:
                llm = self._llm or make_llm(self.settings)
                self._llm = llm
                s = self.settings
                self._generator = Generator(llm, self.prompts, max_tokens=s.llm_max_tokens, context_tokens=s.context_tokens, context=min(s.llm_context, llm.context))
            return self._generator

    @functools.cached_property
    def sources(self) -> Sources:
        """The news sources this service follows (made on first use: a service that never fetches opens no client)."""
        from qa_service.sources import Sources

        return Sources(self)

    def close(self, *, flush: bool = True) -> None:
        """`flush=False` for a dropped collection: its BM25 index is not written back."""
        if "sources" in self.__dict__:
            self.sources.close()
        if flush:
            self.lexical.flush()
        if self._llm is not None and self.parent is None:
            self._llm.close()

    # ingest and documents
    def ingest(self, items: Iterable[Loaded], progress: Progress | None = None) -> IngestReport:
        with self.writer.hold():
            report = self.pipeline.ingest(items, progress)
        observe_ingest(report.added, report.updated, report.unchanged, report.failed)
        return report

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

    def _frame(self, question: str, as_of: AsOf | None) -> TimeFrame:
        try:
            return frame(question, as_of)
        except ValueError as exc:
            raise BadRequest(str(exc), code="invalid_as_of") from None

    def _retrieve(self, question: str, k: int, filters: Filters | None, tf: TimeFrame) -> list[Retrieved]:
        return self.retriever.search(question, k, where_from(filters, tf), tf=tf)

    def _read(self, question: str, k: int, filters: Filters | None, tf: TimeFrame) -> list[Read]:
        """Retrieve the reader's candidates, read each whole, and rerank them."""
        assert self.reader is not None
        s = self.settings
        hits = self._retrieve(question, max(k, s.reader_candidates), filters, tf)
        return rerank(read(self.reader, question, hits), reader_weight=s.reader_weight, rrf_k=s.rrf_k)

    def search(
        self, query: str, top_k: int | None = None, filters: Filters | None = None, *, rerank: bool = False, as_of: AsOf | None = None
    ) -> list[SearchResult]:
        query = self._check_question(query, "query")
        k = self._k(top_k)
        tf = self._frame(query, as_of)
        if rerank and self.reader is None:
            raise NotEnabled("rerank needs the reader, which this server has off (QA_READER=true turns it on)")
        hits: list[Retrieved] = [r.hit for r in self._read(query, k, filters, tf)[:k]] if rerank else self._retrieve(query, k, filters, tf)
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
    def ask(
        self, question: str, top_k: int | None = None, filters: Filters | None = None, *, mode: Mode | None = None, as_of: AsOf | None = None
    ) -> AskResponse:
        return final_answer(self.ask_stream(question, top_k, filters, mode=mode, as_of=as_of))

    def passages_for(self, question: str, top_k: int | None = None, filters: Filters | None = None, *, as_of: AsOf | None = None) -> list[Passage]:
        """The passages the LLM would read first for this question (before any retry), without asking it: replays of
        the sentence selection score these in seconds a question, where an answer takes several."""
        question = self._check_question(question)
        return self._plan(question, self._k(top_k), filters, "generative", self._frame(question, as_of)).passages

    def _plan(self, question: str, k: int, filters: Filters | None, mode: Mode, tf: TimeFrame) -> Plan:
        if mode == "extractive" and self.reader is None:
            raise NotEnabled("extractive mode needs the reader, which this server has off (QA_READER=true turns it on)")
        if mode == "generative" and not self.settings.reader:
            hits = self._retrieve(question, k, filters, tf)
            budget = self.generator.passage_budget(question)
            passages = select_passages(question, hits, self.embedder, budget, self.lexical.term_weights, self._help(question)) if hits else []
            ask = bool(passages) and worth_asking(question, hits, passages, self.settings.min_similarity)
            return Plan(passages, [], None, ask, by_reader=False, hits=hits)
        budget = self.generator.passage_budget(question) if mode == "generative" else 0
        reads = self._read(question, k, filters, tf)[:k]
        top = first_answer(reads, self.settings.reader_min_score)
        if top is None:
            return Plan([], reads, None, False)
        if mode == "extractive":
            return Plan([], reads, top, False)
        return Plan(evidence(reads, budget), reads, top, True)

    def ask_stream(
        self, question: str, top_k: int | None = None, filters: Filters | None = None, *, asked: str | None = None, mode: Mode | None = None,
        as_of: AsOf | None = None,
    ) -> Iterator[StreamEvent]:
        t0 = time.perf_counter()
        question = self._check_question(question)
        mode = mode or self.settings.answer_mode
        tf = self._frame(question, as_of)
        plan = self._plan(question, self._k(top_k), filters, mode, tf)
        t1 = time.perf_counter()
        first_token: float | None = None
        raw = ""
        shown = False
        composed: Composed | None = None
        if plan.ask_llm:
            for attempt in range(2):
                visible = AnswerFilter()
                first_token, raw = None, ""
                pieces: list[Piece] = []
                for delta in self.generator.stream(question, plan.passages, tf, pieces):
                    if first_token is None:
                        first_token = time.perf_counter()
                    raw += delta
                    out = visible.feed(delta)
                    if out:
                        shown = True
                        yield StreamEvent("token", out)
                tail = visible.flush()
                if tail:
                    shown = True
                    yield StreamEvent("token", tail)
                composed = self._compose(raw, plan, question, tf, answer_logprob(pieces))
                wider = self._wider(question, plan, composed.verdict) if attempt == 0 else None
                if wider is None:
                    break
                reason = composed.verdict.reason
                RETRIES.labels(reason or "refused").inc()
                if shown:  # what was streamed is withdrawn: the client clears it
                    yield StreamEvent("retry", reason)
                    shown = False
                plan = wider
        t2 = time.perf_counter()
        resp = self._answer(composed or self._compose(raw, plan, question, tf), mode, tf)
        resp.timings = Timings(
            retrieve_ms=round((t1 - t0) * 1000, 1),
            generate_ms=round((t2 - t1) * 1000, 1),
            total_ms=round((time.perf_counter() - t0) * 1000, 1),
            first_token_ms=round((first_token - t0) * 1000, 1) if first_token else None,
        )
        observe_answer(resp.timings.retrieve_ms, resp.timings.generate_ms, resp.timings.total_ms, resp.timings.first_token_ms)
        observe_outcome(mode, resp.refused, resp.confidence)
        if asked is not None:
            resp.question = asked
        if not shown:
            yield StreamEvent("token", resp.answer)
        yield StreamEvent("done", resp)

    @property
    def _known(self) -> Callable[[str], bool] | None:
        return self.lexical.mentions if self.settings.missing_terms == "archive" else None

    def _help(self, question: str) -> ReaderHelp | None:
        s = self.settings
        if self.reader is None or not s.reader_helps:
            return None
        wide = self.generator.passage_budget(question, s.wide_context_tokens) if s.wide_context_tokens else 0
        return ReaderHelp(self.reader.range_scores, s.sentence_reader_weight, wide, self.reader.score_for(s.reader_sure))

    def _wider(self, question: str, plan: Plan, verdict: Verdict) -> Plan | None:
        """The same hits shown through the wide budget, for a second try when the answer over the narrow evidence was
        refused (the model declined, or grounding refused its reply); None when the answer stands, when the wide
        evidence would be what it already read, or when the retry is off. The sentence reader widens the budget only
        when it is sure of no sentence; a refusal over the sentences it was sure of is the other sign that the answer
        lies elsewhere in the chunks."""
        if not verdict.refused or not self.settings.retry_wide or plan.by_reader or not plan.hits:
            return None
        help_ = self._help(question)
        if help_ is None or not help_.wide_budget:
            return None
        if self.settings.strict_grounding and missing_key_terms(question, " ".join(h.chunk.text for h in plan.hits), self._known):
            return None  # the question names what the archive never mentions: strict grounding refuses any reply
        wide = select_passages(question, plan.hits, self.embedder, help_.wide_budget, self.lexical.term_weights, replace(help_, sure=float("inf")))
        if [p.text for p in wide] == [p.text for p in plan.passages]:
            return None
        return replace(plan, passages=wide)

    def _compose(self, raw: str, plan: Plan, question: str, tf: TimeFrame | None = None, logprob: float | None = None) -> Composed:
        if self.reader is None or not plan.by_reader:
            verdict = ground(raw, plan.passages, question, strict=self.settings.strict_grounding, known=self._known)
            if self.reader is None or self.answer_calibration is None:
                return Composed(verdict, plan.passages, None, None)
            return calibrated(verdict, plan.passages, self.reader, self.answer_calibration, question, tf, logprob)
        if plan.top is None:
            return Composed(refusal("reader_no_answer"), [], None, None)
        if not plan.ask_llm:
            return extractive(plan.top, self.reader)
        trusted = self.reader.confidence(plan.top.span.score) >= self.settings.reader_trust
        verdict = ground(raw, plan.passages, question, strict=self.settings.strict_grounding and not trusted, known=self._known)
        if verdict.refused:
            return extractive(plan.top, self.reader) if trusted else Composed(verdict, plan.passages, None, None)
        return with_reader(verdict, plan.passages, plan.reads, self.reader, question)

    def _answer(self, c: Composed, mode: Mode, tf: TimeFrame) -> AskResponse:
        v: Verdict = c.verdict
        empty = Timings(retrieve_ms=0, generate_ms=0, total_ms=0)
        if v.refused:
            resp = AskResponse(answer=v.answer, short_answer=None, refused=True, citations=[], timings=empty, mode=mode, confidence=c.confidence)
        else:
            by_n = {p.n: p for p in c.passages}
            docs = self.store.get_documents(sorted({by_n[n].hit.chunk.doc_id for n in v.cited}))
            citations = cite(v, c.passages, docs)
            answer = dated(v.answer, citations[0].published_at if citations else None) if tf.relative else v.answer
            resp = AskResponse(
                answer=answer, short_answer=v.short, refused=False, citations=citations, timings=empty,
                mode=mode, confidence=c.confidence, span=c.span,
            )
            resp._signals = c.signals
        resp._evidence = [p.text for p in c.passages]
        return resp

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

    def chat_stream(
        self, messages: list[ChatMessage], top_k: int | None = None, filters: Filters | None = None, *, mode: Mode | None = None,
        as_of: AsOf | None = None,
    ) -> Iterator[StreamEvent]:
        question = self.standalone_question(messages)
        yield from self.ask_stream(question, top_k, filters, asked=question, mode=mode, as_of=as_of)


def final_answer(events: Iterable[StreamEvent]) -> AskResponse:
    """Run a stream to its end; the answer is its `done` event."""
    final: AskResponse | None = None
    for ev in events:
        if ev.event == "done":
            final = ev.data
    assert final is not None
    return final
