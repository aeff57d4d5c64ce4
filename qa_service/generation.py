"""Passages -> prompt (from prompts/) -> LLM -> parsed answer, as an LCEL chain, within a token budget."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import Runnable

from qa_service.embedding import Embedder
from qa_service.errors import ConfigError, PayloadTooLarge
from qa_service.ingest.chunking import count_tokens, sentences
from qa_service.llm.base import StreamingLLM
from qa_service.llm.langchain_adapter import ProtocolChatModel
from qa_service.retrieval import Retrieved
from qa_service.store.lexical import tokenize


@dataclass
class Passage:
    n: int
    hit: Retrieved
    text: str  # the excerpt the model reads
    spans: list[tuple[int, int]]  # excerpt sentence spans, in document offsets


@dataclass
class Prompts:
    system: str
    answer: str
    condense: str
    examples: list[tuple[str, str]]  # (role, text) few-shot turns: part of the stable, cached prefix

    @classmethod
    def load(cls, folder: Path) -> Prompts:
        try:
            system, answer, condense, examples = (
                Path(folder, f"{name}.md").read_text(encoding="utf-8").strip() for name in ("system", "answer", "condense", "examples")
            )
        except FileNotFoundError as exc:
            raise ConfigError(f"prompt template missing: {exc.filename}") from None
        turns = [
            ("human" if part.startswith("user") else "ai", part.split("\n", 1)[1].strip())
            for part in re.split(r"^### ", examples, flags=re.MULTILINE)
            if part.strip() and part.split("\n", 1)[0].strip() in {"user", "assistant"}
        ]
        return cls(system, answer, condense, turns)


TermWeights = Callable[[set[str]], dict[str, float]]
LEXICAL_WEIGHT = 0.7  # chosen on the dev set by evidence recall of the selected passages (README, Retrieval)
RANK_PRIOR = 0.1
NEIGHBOUR_BONUS = 0.15
GUARANTEED_HITS = 2
LEDE_BONUS = 0.1  # a news article's first sentence carries its main facts (the lede)


def _mentions(term: str, words: set[str]) -> bool:
    """Exact stem, or a longer word it begins ("iran" in "iranian"): stems miss demonyms and compounds."""
    return term in words or (len(term) >= 4 and any(w.startswith(term) for w in words))


def _escape(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


def select_passages(
    question: str, hits: list[Retrieved], embedder: Embedder, budget: int, term_weights: TermWeights | None = None
) -> list[Passage]:
    """Trim the retrieved chunks to the sentences that best match the question (plus neighbours), within budget.

    Sentences compete across chunks on similarity, IDF-weighted word overlap (the question's names weigh more
    than "name" or "first") and small bonuses for the chunk's retrieval rank and an article's lede. The two best
    chunks always get their best sentence; any other chunk none of whose sentences wins a place is left out, so
    the model reads fewer distractors. Every [n] still names a retrieved chunk.
    """
    if not hits:
        return []
    units: list[tuple[int, int, int, int]] = []  # hit index, sentence index, doc start, doc end
    per_hit: list[list[tuple[int, int]]] = []
    for i, h in enumerate(hits):
        spans = [(h.chunk.start + s, h.chunk.start + e) for s, e in sentences(h.chunk.text)] or [(h.chunk.start, h.chunk.end)]
        per_hit.append(spans)
        units.extend((i, j, s, e) for j, (s, e) in enumerate(spans))

    def text_of(i: int, s: int, e: int) -> str:
        c = hits[i].chunk
        return c.text[s - c.start : e - c.start]

    texts = [text_of(i, s, e) for i, _, s, e in units]
    q_vec = embedder.embed_query(question)
    sims = embedder.embed_cached(texts) @ q_vec
    q_terms = set(tokenize(question))
    weights = term_weights(q_terms) if term_weights else dict.fromkeys(q_terms, 1.0)
    total = sum(weights.values()) or 1.0
    words = [set(tokenize(x)) for x in texts]
    lex = np.array([sum(weights[t] for t in q_terms if _mentions(t, w)) / total for w in words], dtype=np.float32)
    prior = np.array(
        [RANK_PRIOR / (1 + i) + (LEDE_BONUS if j == 0 and hits[i].chunk.start == 0 else 0.0) for i, j, _, _ in units], dtype=np.float32
    )
    score = sims + LEXICAL_WEIGHT * lex + prior
    cost = [count_tokens(t) + 1 for t in texts]
    label_cost = [count_tokens(f"[{i + 1}] {_label(h.chunk.title)}\n") for i, h in enumerate(hits)]
    chosen: set[int] = set()
    opened: set[int] = set()  # hits with a sentence chosen: their label is paid for
    used = 0

    def take(u: int) -> bool:
        nonlocal used
        i = units[u][0]
        need = cost[u] + (0 if i in opened else label_cost[i])
        if u in chosen or used + need > budget:
            return False
        chosen.add(u)
        opened.add(i)
        used += need
        return True

    index = {(i, j): u for u, (i, j, _, _) in enumerate(units)}
    for i in range(min(GUARANTEED_HITS, len(hits))):
        take(max((u for u, unit in enumerate(units) if unit[0] == i), key=lambda u: score[u]))
    # then the best sentences, preferring neighbours of what is already chosen
    for _ in range(len(units)):
        bonus = np.zeros(len(units), dtype=np.float32)
        for u in chosen:
            i, j = units[u][:2]
            for nb in (index.get((i, j - 1)), index.get((i, j + 1))):
                if nb is not None:
                    bonus[nb] = NEIGHBOUR_BONUS
        ranked = [u for u in np.argsort(-(score + bonus)) if u not in chosen]
        if not any(take(int(u)) for u in ranked[:8]):
            break
    passages: list[Passage] = []
    for i, h in enumerate(hits):
        picked = sorted(units[u][1] for u in chosen if units[u][0] == i)
        if not picked:
            continue
        text = ""
        kept: list[tuple[int, int]] = []
        prev = -2
        for j in picked:
            s, e = per_hit[i][j]
            if kept:  # the document's own spacing between neighbours, an ellipsis over a gap
                text += text_of(i, kept[-1][1], s) if j == prev + 1 else " … "
            text += text_of(i, s, e)
            kept.append((s, e))
            prev = j
        passages.append(Passage(len(passages) + 1, h, text, kept))
    return passages


def _label(title: str) -> str:
    return title if len(title) <= 80 else title[:77].rsplit(" ", 1)[0] + " …"


def format_passages(passages: list[Passage]) -> str:
    return "\n\n".join(f"[{p.n}] {_label(p.hit.chunk.title)}\n{p.text}" for p in passages)


class Generator:
    """Builds the LCEL answer chain: prompt template | chat model | string parser."""

    def __init__(self, llm: StreamingLLM, prompts: Prompts, *, max_tokens: int, context_tokens: int, context: int) -> None:
        self.llm = llm
        self.prompts = prompts
        self.max_tokens = max_tokens
        self.context_tokens = context_tokens
        self.context = context
        self.model = ProtocolChatModel(backend=llm, max_tokens=max_tokens)
        prefix = [("system", _escape(prompts.system))] + [(role, _escape(text)) for role, text in prompts.examples]
        self.system_tokens = sum(count_tokens(text) + 4 for _, text in prefix)
        template = ChatPromptTemplate.from_messages([*prefix, ("human", prompts.answer)])
        self.chain: Runnable[dict[str, str], str] = template | self.model | StrOutputParser()
        condense = ChatPromptTemplate.from_messages([("human", prompts.condense)])
        self.condense_chain: Runnable[dict[str, str], str] = condense | self.model.bind(max_tokens=48) | StrOutputParser()

    def passage_budget(self, question: str) -> int:
        """Tokens left for passages once instructions, question and answer are reserved."""
        q = count_tokens(question)
        spare = self.context - self.system_tokens - q - self.max_tokens - 96
        if spare < 64:
            raise PayloadTooLarge(f"question is {q} tokens; it leaves no room for passages in a {self.context}-token context")
        return min(self.context_tokens, spare)

    def stream(self, question: str, passages: list[Passage]) -> Iterator[str]:
        yield from self.chain.stream({"passages": format_passages(passages), "question": question})

    def warmup(self) -> None:
        """Evaluate the stable instruction prefix once, so the engine's prompt cache holds it before any question."""
        self.model.invoke(self.chain.first.invoke({"passages": "[1] -\n-", "question": "-"}), max_tokens=1)  # type: ignore[attr-defined]

    def condense(self, history: str, question: str) -> str:
        return self.condense_chain.invoke({"history": history, "question": question}).strip()
