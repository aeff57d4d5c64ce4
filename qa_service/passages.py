"""Retrieved chunks -> the passages the LLM reads: the sentences that best match the question, within a budget.

Sentences compete across chunks on similarity, IDF-weighted word overlap (the question's names weigh more than
"name" or "first") and small bonuses for the chunk's retrieval rank and an article's lede. Each part of a
multi-part question ("who ..., and where ...?") gets its own best sentence first, so no part goes unanswered
for want of evidence; then the two best chunks get their best sentence; any other chunk none of whose sentences
wins a place is left out, so the model reads fewer distractors. Every [n] still names a retrieved chunk.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from qa_service.embedding import Embedder
from qa_service.ingest.chunking import count_tokens
from qa_service.retrieval import Retrieved
from qa_service.text import question_parts, sentences, tokenize

TermWeights = Callable[[set[str]], dict[str, float]]
RangeScores = Callable[[str, list[str], list[list[tuple[int, int]]]], list[list[float]]]  # (question, chunk texts, their sentence ranges)
LEXICAL_WEIGHT = 0.7  # weight of the IDF word overlap against cosine, chosen on QAMR dev by evidence recall
RANK_PRIOR = 0.1  # a sentence of the chunk ranked r gets RANK_PRIOR / r: retrieval's order breaks near ties
NEIGHBOUR_BONUS = 0.15  # a sentence next to a chosen one reads as context, not as a new distractor
GUARANTEED_HITS = 2  # the first chunks always get their best sentence, whatever the other scores
LEDE_BONUS = 0.1  # a news article's first sentence carries its main facts (the lede)
SHORTLIST = 8  # each round tries the best few sentences that still fit the budget
READER_SCALE = 2.0  # a reader margin of +-2 moves a sentence's reader term from 0.5 to 0.73 / 0.27 of its weight


@dataclass(frozen=True)
class ReaderHelp:
    """The trained reader's part in choosing sentences. Word overlap finds the sentence that repeats the question's
    words; the reader finds the one that answers a paraphrase. And when no sentence of the top chunks holds a span
    the reader is sure of (its margin over "no answer" below `sure`), the evidence gets the wider budget: the answer
    may be in a sentence overlap does not rank, and more of the chunks is the better bet."""

    scores: RangeScores
    weight: float  # of sigmoid(margin / READER_SCALE), added to each sentence's score
    wide_budget: int  # tokens when the reader is not sure; 0 keeps the budget
    sure: float


@dataclass
class Passage:
    n: int
    hit: Retrieved
    text: str  # the excerpt the model reads
    spans: list[tuple[int, int]]  # excerpt sentence spans, in document offsets


@dataclass(frozen=True)
class _Unit:
    """One sentence of one retrieved chunk."""

    hit: int
    index: int
    start: int  # document offsets
    end: int


def _mentions(term: str, words: set[str]) -> bool:
    """Exact stem, or a longer word it begins ("iran" in "iranian"): stems miss demonyms and compounds."""
    return term in words or (len(term) >= 4 and any(w.startswith(term) for w in words))


def _text_of(hit: Retrieved, start: int, end: int) -> str:
    return hit.chunk.text[start - hit.chunk.start : end - hit.chunk.start]


def _sentence_units(hits: list[Retrieved]) -> tuple[list[_Unit], list[list[tuple[int, int]]]]:
    units: list[_Unit] = []
    per_hit: list[list[tuple[int, int]]] = []
    for i, h in enumerate(hits):
        spans = [(h.chunk.start + s, h.chunk.start + e) for s, e in sentences(h.chunk.text)] or [(h.chunk.start, h.chunk.end)]
        per_hit.append(spans)
        units.extend(_Unit(i, j, s, e) for j, (s, e) in enumerate(spans))
    return units, per_hit


def _scores(
    question: str, texts: list[str], units: list[_Unit], hits: list[Retrieved], embedder: Embedder, term_weights: TermWeights | None
) -> np.ndarray:
    q_vec = embedder.embed_query(question)
    sims = embedder.embed_cached(texts) @ q_vec
    q_terms = set(tokenize(question))
    weights = term_weights(q_terms) if term_weights else dict.fromkeys(q_terms, 1.0)
    total = sum(weights.values()) or 1.0
    words = [set(tokenize(x)) for x in texts]
    lex = np.array([sum(weights[t] for t in q_terms if _mentions(t, w)) / total for w in words], dtype=np.float32)
    prior = np.array(
        [RANK_PRIOR / (1 + u.hit) + (LEDE_BONUS if u.index == 0 and hits[u.hit].chunk.start == 0 else 0.0) for u in units], dtype=np.float32
    )
    return np.asarray(sims + LEXICAL_WEIGHT * lex + prior)


class _Budget:
    """Chosen sentences and the tokens they cost; a chunk's label is paid once, with its first sentence."""

    def __init__(self, units: list[_Unit], cost: list[int], label_cost: list[int], budget: int) -> None:
        self.units, self.cost, self.label_cost, self.budget = units, cost, label_cost, budget
        self.chosen: set[int] = set()
        self.opened: set[int] = set()
        self.used = 0

    def take(self, u: int) -> bool:
        i = self.units[u].hit
        need = self.cost[u] + (0 if i in self.opened else self.label_cost[i])
        if u in self.chosen or self.used + need > self.budget:
            return False
        self.chosen.add(u)
        self.opened.add(i)
        self.used += need
        return True


def _choose(units: list[_Unit], score: np.ndarray, n_hits: int, budget: _Budget, firsts: list[int]) -> set[int]:
    for u in firsts:
        budget.take(u)
    for i in range(min(GUARANTEED_HITS, n_hits)):
        budget.take(max((u for u, unit in enumerate(units) if unit.hit == i), key=lambda u: score[u]))
    index = {(unit.hit, unit.index): u for u, unit in enumerate(units)}
    # then the best sentences, preferring neighbours of what is already chosen
    for _ in range(len(units)):
        bonus = np.zeros(len(units), dtype=np.float32)
        for u in budget.chosen:
            unit = units[u]
            for nb in (index.get((unit.hit, unit.index - 1)), index.get((unit.hit, unit.index + 1))):
                if nb is not None:
                    bonus[nb] = NEIGHBOUR_BONUS
        ranked = [u for u in np.argsort(-(score + bonus)) if u not in budget.chosen]
        if not any(budget.take(int(u)) for u in ranked[:SHORTLIST]):
            break
    return budget.chosen


def _excerpt(hit: Retrieved, spans: list[tuple[int, int]], picked: list[int]) -> tuple[str, list[tuple[int, int]]]:
    """The picked sentences with the document's own spacing between neighbours, an ellipsis over a gap."""
    text = ""
    kept: list[tuple[int, int]] = []
    prev = -2
    for j in picked:
        s, e = spans[j]
        if kept:
            text += _text_of(hit, kept[-1][1], s) if j == prev + 1 else " … "
        text += _text_of(hit, s, e)
        kept.append((s, e))
        prev = j
    return text, kept


def _reader_margins(question: str, hits: list[Retrieved], per_hit: list[list[tuple[int, int]]], scores: RangeScores) -> np.ndarray:
    """Each sentence's reader margin, in unit order (chunk by chunk, sentence by sentence)."""
    ranges = [[(s - h.chunk.start, e - h.chunk.start) for s, e in spans] for h, spans in zip(hits, per_hit, strict=True)]
    margins = [m for chunk in scores(question, [h.chunk.text for h in hits], ranges) for m in chunk]
    return np.nan_to_num(np.array(margins, dtype=np.float64), neginf=-30.0, posinf=30.0)


def select_passages(
    question: str,
    hits: list[Retrieved],
    embedder: Embedder,
    budget: int,
    term_weights: TermWeights | None = None,
    reader: ReaderHelp | None = None,
) -> list[Passage]:
    """Trim the retrieved chunks to the sentences that best match the question (plus neighbours), within budget."""
    if not hits:
        return []
    units, per_hit = _sentence_units(hits)
    texts = [_text_of(hits[u.hit], u.start, u.end) for u in units]
    score = _scores(question, texts, units, hits, embedder, term_weights)
    firsts: list[int] = []
    parts = question_parts(question)
    if len(parts) > 1:
        per_part = [_scores(part, texts, units, hits, embedder, term_weights) for part in parts]
        firsts = [int(np.argmax(x)) for x in per_part]
        score = np.maximum(score, np.max(per_part, axis=0))
    if reader is not None:
        margins = _reader_margins(question, hits, per_hit, reader.scores)
        score = score + (reader.weight / (1.0 + np.exp(-margins / READER_SCALE))).astype(np.float32)
        if reader.wide_budget and margins.max() < reader.sure:
            budget = max(budget, reader.wide_budget)
    cost = [count_tokens(t) + 1 for t in texts]
    label_cost = [count_tokens(f"[{i + 1}] {label(h.chunk.title)}{dateline(h.chunk.published_at)}\n") for i, h in enumerate(hits)]
    chosen = _choose(units, score, len(hits), _Budget(units, cost, label_cost, budget), firsts)
    passages: list[Passage] = []
    for i, h in enumerate(hits):
        picked = sorted(units[u].index for u in chosen if units[u].hit == i)
        if picked:
            text, kept = _excerpt(h, per_hit[i], picked)
            passages.append(Passage(len(passages) + 1, h, text, kept))
    return passages


def label(title: str) -> str:
    return title if len(title) <= 80 else title[:77].rsplit(" ", 1)[0] + " …"


def format_passages(passages: list[Passage]) -> str:
    """Each passage under its number and title, with its publication date when it has one (the model needs it to
    tell this week's news from last year's)."""
    return "\n\n".join(f"[{p.n}] {label(p.hit.chunk.title)}{dateline(p.hit.chunk.published_at)}\n{p.text}" for p in passages)


def dateline(published_at: str | None) -> str:
    return f" (published {published_at[:10]})" if published_at else ""
