"""The LLM's grounded verdict and the reader's spans -> one answer: the short answer, its span and a confidence.

The LLM writes the answer sentence; the reader says where the answer stands and how sure it is. On the reader path,
when the two agree the reader's span gives the offsets; when the LLM refuses or fails grounding and the reader is
confident, the reader's span is the answer (its sentence, cited); the confidence is the reader's calibrated
probability for the short answer that is shown, so a short answer the reader would not pick gets a low one. On the
default path the LLM's short answer is found in the chunks it cites and scored there by the reader; an answer
calibration (fitted on answered dev questions) turns that score, how far the cited sources lie outside the
question's time window, and how sure the LLM was of its least sure word into P(the answer is right).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from qa_service.citations import Verdict, support
from qa_service.errors import ConfigError
from qa_service.llm.base import Piece
from qa_service.passages import Passage
from qa_service.reading import Read, Reader, sentence_of
from qa_service.schemas import AnswerSpan
from qa_service.text import sentences
from qa_service.timeframe import TimeFrame, days_outside, published_day

AGREE = 0.5  # token support of the LLM's short answer in the reader's span (or back) for the two to agree
_ANSWER = re.compile(r"\s*Answer:\s*")
_CITATION = re.compile(r"\[\d+(?:\s*,\s*\d+)*\]")


@dataclass
class Composed:
    verdict: Verdict
    passages: list[Passage]
    span: AnswerSpan | None
    confidence: float | None
    signals: Signals | None = None  # what the calibration read, for the eval rows it is refitted from


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


def answer_logprob(pieces: list[Piece]) -> float | None:
    """The lowest log-probability among the answer sentence's words: how sure the LLM was of its least sure word.
    The "Answer:" lead, the citation markers (which passage to cite is another question) and the SHORT line are left
    out, as are pieces without a letter or digit. None when the backend reported no log-probabilities."""
    raw = "".join(pieces)
    lead = _ANSWER.match(raw)
    start = lead.end() if lead else 0
    end = raw.find("SHORT", start)
    end = len(raw) if end < 0 else end
    cites = [(m.start(), m.end()) for m in _CITATION.finditer(raw, start, end)]
    lowest: float | None = None
    pos = 0
    for piece in pieces:
        s, e = pos, pos + len(piece)
        pos = e
        if piece.logprob is None or e <= start or s >= end or not any(ch.isalnum() for ch in piece):
            continue
        if any(s < ce and e > cs for cs, ce in cites):
            continue
        lowest = piece.logprob if lowest is None else min(lowest, piece.logprob)
    return lowest


STALE_CAP_YEARS = 2.0  # beyond two years outside the question's window, older says nothing more


def staleness(cited: list[Passage], tf: TimeFrame | None) -> float:
    """Years between the question's window ("this week", "recently") and the newest source the answer cites, capped;
    0 when the question names no time, a source falls inside the window, or none is dated. On the quiz set, answers
    to such questions that cite a source more than a year outside the window were right a third of the time, against
    about 0.7 within two weeks: last year's answer to this week's question."""
    if tf is None or tf.window is None:
        return 0.0
    dates = [d for d in (published_day(p.hit.chunk.published_at) for p in cited) if d is not None]
    if not dates:
        return 0.0
    return min(STALE_CAP_YEARS, days_outside(max(dates), tf.window) / 365.0)


@dataclass(frozen=True)
class Signals:
    """What the answer calibration reads: the reader's score of the short answer in its cited chunks (None: not
    found there), the cited sources' `staleness` and the reply's `answer_logprob` (None: not reported)."""

    score: float | None
    stale: float
    logprob: float | None


@dataclass(frozen=True)
class Weights:
    bias: float
    score: float
    found: float
    stale: float
    llm: float = 0.0


@dataclass(frozen=True)
class AnswerCalibration:
    """P(an answer is right) = sigmoid(bias + w_score * clip(score) / scale + w_found * found + w_stale * stale
    + w_llm * llm).

    - score: the reader's score of the LLM's short answer where it stands in a cited chunk; found: whether it stands
      in one at all (a paraphrased short answer has no span to score). The reader ranks answers to questions that
      reuse their sentence's words.
    - stale: `staleness`, years between the question's window and the newest cited source.
    - llm: the LLM's lowest word log-probability in its answer sentence, clipped (`answer_logprob`): its own doubt,
      which ranks answers to paraphrased questions better than the reader does.

    A backend that reports no log-probabilities gets `weights`, fitted without the llm term; one that does gets
    `with_llm`."""

    weights: Weights
    with_llm: Weights | None = None
    clip: tuple[float, float] = (-10.0, 15.0)
    scale: float = 10.0
    llm_floor: float = -8.0

    @classmethod
    def load(cls, path: Path) -> AnswerCalibration:
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
            llm = d.get("weights_with_llm")
            return cls(
                _weights(d["weights"]), _weights(llm) if llm else None, tuple(d.get("clip", cls.clip)), float(d.get("scale", cls.scale)),
                float(d.get("llm_floor", cls.llm_floor)),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"answer calibration {path} is unreadable: {exc}") from None

    def features(self, score: float | None, stale: float = 0.0, logprob: float | None = None) -> tuple[float, float, float, float | None]:
        """(clipped, scaled score; found; stale; clipped log-probability or None): what the fit
        (bench/answer_calibration.py) and the service both compute."""
        llm = None if logprob is None or not math.isfinite(logprob) else max(self.llm_floor, min(0.0, logprob))
        if score is None or not math.isfinite(score):
            return 0.0, 0.0, stale, llm
        return max(self.clip[0], min(self.clip[1], score)) / self.scale, 1.0, stale, llm

    def __call__(self, score: float | None, stale: float = 0.0, logprob: float | None = None) -> float:
        x, found, stale, llm = self.features(score, stale, logprob)
        w = self.with_llm if llm is not None and self.with_llm is not None else self.weights
        z = w.bias + w.score * x + w.found * found + w.stale * stale + w.llm * (llm or 0.0)
        return 1.0 / (1.0 + math.exp(-z))


def _weights(d: dict[str, float]) -> Weights:
    return Weights(float(d["bias"]), float(d["score"]), float(d["found"]), float(d.get("stale", 0.0)), float(d.get("llm", 0.0)))


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


def calibrated(
    verdict: Verdict, passages: list[Passage], reader: Reader, calibration: AnswerCalibration, question: str,
    tf: TimeFrame | None = None, logprob: float | None = None,
) -> Composed:
    """A grounded default-path verdict with the short answer's span and the calibrated probability it is right;
    `logprob`: the reply's `answer_logprob`."""
    if verdict.refused:
        return Composed(verdict, passages, None, None)
    cited = [p for p in passages if p.n in verdict.cited]
    span, score = located(verdict.short, cited, reader, question) if verdict.short else (None, None)
    signals = Signals(score, staleness(cited, tf), logprob)
    return Composed(verdict, passages, span, round(calibration(score, signals.stale, logprob), 4), signals)
