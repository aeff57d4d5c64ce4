"""The LLM's grounded verdict and the reader's spans -> one answer: the short answer, its span and a confidence.

The LLM writes the answer sentence; the reader says where the answer stands and how sure it is. On the reader path,
when the two agree the reader's span gives the offsets; when the LLM refuses or fails grounding and the reader is
confident, the reader's span is the answer (its sentence, cited); the confidence is the reader's calibrated
probability for the short answer that is shown, so a short answer the reader would not pick gets a low one. On the
default path the LLM's short answer is found in the chunks it cites and scored there by the reader; an answer
calibration (fitted on answered dev questions) turns that score into P(the answer is right).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from qa_service.citations import Verdict, support
from qa_service.errors import ConfigError
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


@dataclass(frozen=True)
class AnswerCalibration:
    """P(an answer is right) = sigmoid(bias + w_score * clip(score) / scale + w_found * found), where score is the
    reader's score of the LLM's short answer where it stands in a cited chunk and found says whether it stands in one
    at all (a paraphrased short answer has no span to score)."""

    bias: float
    w_score: float
    w_found: float
    clip: tuple[float, float] = (-10.0, 15.0)
    scale: float = 10.0

    @classmethod
    def load(cls, path: Path) -> AnswerCalibration:
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
            w = d["weights"]
            return cls(float(w["bias"]), float(w["score"]), float(w["found"]), tuple(d.get("clip", cls.clip)), float(d.get("scale", cls.scale)))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"answer calibration {path} is unreadable: {exc}") from None

    def features(self, score: float | None) -> tuple[float, float]:
        """(clipped, scaled score; found): what the fit (bench/answer_calibration.py) and the service both compute."""
        if score is None or not math.isfinite(score):
            return 0.0, 0.0
        return max(self.clip[0], min(self.clip[1], score)) / self.scale, 1.0

    def __call__(self, score: float | None) -> float:
        x, found = self.features(score)
        return 1.0 / (1.0 + math.exp(-(self.bias + self.w_score * x + self.w_found * found)))


def located(short: str, cited: list[Passage], reader: Reader, question: str) -> tuple[AnswerSpan | None, float | None]:
    """Where the LLM's short answer stands in the chunks of its cited passages (first found, case-insensitive), and the
    reader's best score for it there; (None, None) when it stands in none."""
    if not short.strip():
        return None, None
    best: tuple[float, AnswerSpan] | None = None
    needle = re.compile(re.escape(short.strip()), re.IGNORECASE)  # matched on the text itself: lower() can change lengths
    seen: set[str] = set()
    for p in cited:
        c = p.hit.chunk
        if c.chunk_id in seen:
            continue
        seen.add(c.chunk_id)
        m = needle.search(c.text)
        if m is None:
            continue
        score = reader.score_span(question, c.text, m.start(), m.end())
        span = AnswerSpan(doc_id=c.doc_id, chunk_id=c.chunk_id, start=c.start + m.start(), end=c.start + m.end(), text=m.group())
        if best is None or score > best[0]:
            best = (score, span)
    return (best[1], best[0]) if best else (None, None)


def calibrated(verdict: Verdict, passages: list[Passage], reader: Reader, calibration: AnswerCalibration, question: str) -> Composed:
    """A grounded default-path verdict with the short answer's span and the calibrated probability it is right."""
    if verdict.refused:
        return Composed(verdict, passages, None, None)
    span, score = located(verdict.short, [p for p in passages if p.n in verdict.cited], reader, question) if verdict.short else (None, None)
    return Composed(verdict, passages, span, round(calibration(score), 4))
