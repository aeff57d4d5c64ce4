"""The LLM's grounded verdict and the reader's spans -> one answer: the short answer, its span and a confidence.

The LLM writes the answer sentence; the reader says where the answer stands and how sure it is. When they agree
the reader's span gives the offsets; when the LLM refuses or fails grounding and the reader is confident, the
reader's span is the answer (its sentence, cited); the confidence is always the reader's calibrated probability
for the short answer that is shown, so a short answer the reader would not pick gets a low one.
"""

from __future__ import annotations

from dataclasses import dataclass

from qa_service.citations import Verdict, support
from qa_service.passages import Passage
from qa_service.reading import Read, Reader, sentence_of
from qa_service.schemas import AnswerSpan
from qa_service.text import sentences

AGREE = 0.5  # token support of the LLM's short answer in the reader's span (or back) for the two to agree


@dataclass
class Composed:
    verdict: Verdict
    passages: list[Passage]
    span: AnswerSpan | None
    confidence: float | None


def answer_span(r: Read) -> AnswerSpan:
    c = r.hit.chunk
    return AnswerSpan(doc_id=c.doc_id, chunk_id=c.chunk_id, start=c.start + r.span.start, end=c.start + r.span.end, text=r.span.text)


def extractive(top: Read, reader: Reader) -> Composed:
    """The reader alone: its span's sentence as the answer, cited to the one passage it comes from."""
    text = top.hit.chunk.text
    spans = sentences(text) or [(0, len(text))]
    s, e = spans[sentence_of(spans, top.span.start)]
    base = top.hit.chunk.start
    passage = Passage(1, top.hit, text[s:e].strip(), [(base + s, base + e)])
    verdict = Verdict(answer=f"{passage.text.rstrip()} [1]", short=top.span.text.strip(" .,;:"), cited=[1])
    return Composed(verdict, [passage], answer_span(top), round(reader.confidence(top.span.score), 4))


def _agrees(short: str, span: str) -> bool:
    return bool(span) and (support(short, span) >= AGREE or support(span, short) >= AGREE)


def with_reader(verdict: Verdict, passages: list[Passage], reads: list[Read], reader: Reader, question: str) -> Composed:
    """A grounded LLM verdict, given the reader's span and confidence for its short answer."""
    cited = [p for p in passages if p.n in verdict.cited]
    by_chunk = {r.hit.chunk.chunk_id: r for r in reads}
    cited_reads = [by_chunk[p.hit.chunk.chunk_id] for p in cited if p.hit.chunk.chunk_id in by_chunk]
    if verdict.short is None:
        if not cited_reads:
            return Composed(verdict, passages, None, None)
        r = max(cited_reads, key=lambda r: r.span.score)
        verdict.short = r.span.text.strip(" .,;:") or None
        return Composed(verdict, passages, answer_span(r), round(reader.confidence(r.span.score), 4))
    for r in sorted(cited_reads, key=lambda r: -r.span.score):
        if _agrees(verdict.short, r.span.text):
            return Composed(verdict, passages, answer_span(r), round(reader.confidence(r.span.score), 4))
    score = float("-inf")
    for r in cited_reads:  # the reader's own score for the LLM's short answer where it stands
        at = r.hit.chunk.text.find(verdict.short)
        if at >= 0:
            score = max(score, reader.score_span(question, r.hit.chunk.text, at, at + len(verdict.short)))
    return Composed(verdict, passages, None, round(reader.confidence(score), 4))
