"""Reader training data -> tokenised windows with start/end labels, positives and negatives.

Each QA pair gives the window of its context that holds the first answer (tokens of the question, then of the
context, cut to `max_length`); the no-answer label points both ends at [CLS], as in SQuAD 2.0. Negatives teach
the reader to abstain: a window of the same context without the answer (hard), a window of another context
(easy), and another context on the question's subject (related: the most similar by TF-IDF that lacks the answer),
each with a fixed probability, so the mix is reproducible from the seed. Related negatives are the near-misses a
news archive is full of, an older article on the same story: a reader that only ever saw random contexts as
negatives prefers any confident span in a context about the question's subject.
"""

from __future__ import annotations

import gzip
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TRAIN_FILES = ("qamr-wikipedia", "squadshifts-new-wiki", "squadshifts-reddit", "squadshifts-amazon", "xquad-en")


@dataclass(frozen=True)
class Pair:
    question: str
    context: str
    answer_start: int | None  # None: no answer in this context
    answer_text: str
    origin: str


@dataclass(frozen=True)
class Window:
    input_ids: list[int]
    token_type_ids: list[int]
    start: int  # 0 ([CLS]) when the window holds no answer
    end: int


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def load_pairs(folder: Path, names: tuple[str, ...] = TRAIN_FILES) -> list[Pair]:
    pairs: list[Pair] = []
    for name in names:
        for row in read_jsonl(folder / f"{name}.jsonl.gz"):
            answers = row.get("answers") or []
            if answers:
                a = answers[0]
                pairs.append(Pair(row["question"], row["context"], int(a["start"]), a["text"], name))
    return pairs


def related_contexts(questions: list[str], contexts: list[str], k: int = 5) -> list[list[int]]:
    """For each question, the indices of the k contexts most similar to it (TF-IDF cosine), best first."""
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer

    vectorizer = TfidfVectorizer(sublinear_tf=True, stop_words="english", min_df=1, dtype=np.float32)
    matrix = vectorizer.fit_transform(contexts).T.tocsc()
    out: list[list[int]] = []
    for lo in range(0, len(questions), 2048):
        scores = (vectorizer.transform(questions[lo : lo + 2048]) @ matrix).toarray()
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        out.extend(row.tolist() for row in top)
    return out


def with_negatives(pairs: list[Pair], *, hard: float, easy: float, seed: int, related: float = 0.0) -> list[Pair]:
    """Each positive, then maybe a hard negative (the same context, answer window excluded by `windows`), maybe
    an easy one (another context of the set) and maybe a related one (the context most like the question among
    those without the answer). Hard negatives are marked by answer_start None on the same context."""
    rng = random.Random(seed)
    contexts = sorted({p.context for p in pairs})
    near = related_contexts([p.question for p in pairs], contexts) if related > 0 else []
    out: list[Pair] = []
    for i, p in enumerate(pairs):
        out.append(p)
        if rng.random() < hard and len(p.context) > 600:
            out.append(Pair(p.question, p.context, None, p.answer_text, p.origin + ":hard"))
        if rng.random() < easy:
            other = contexts[rng.randrange(len(contexts))]
            if p.answer_text.lower() not in other.lower():
                out.append(Pair(p.question, other, None, "", p.origin + ":easy"))
        if related > 0 and rng.random() < related:
            answer = p.answer_text.lower()
            alike = next((c for j in near[i] if (c := contexts[j]) != p.context and answer not in c.lower()), None)
            if alike is not None:
                out.append(Pair(p.question, alike, None, "", p.origin + ":related"))
    return out


def featurize(tokenizer: Any, pair: Pair, max_length: int, stride: int = 64) -> Window | None:
    """The training window for a pair: the one holding the answer, or for a negative a window without it."""
    try:
        enc = tokenizer(
            pair.question, pair.context, truncation="only_second", max_length=max_length, stride=min(stride, max_length // 4),
            return_overflowing_tokens=True, return_offsets_mapping=True,
        )
    except Exception:  # a question too long to leave room for context in the window: not worth training on
        return None
    answer = None if pair.answer_start is None and not pair.answer_text else (pair.answer_start, pair.answer_text)
    hard_negative = pair.answer_start is None and bool(pair.answer_text)
    for i in range(len(enc["input_ids"])):
        seq = enc.sequence_ids(i)
        offsets = enc["offset_mapping"][i]
        ctx = [j for j, s in enumerate(seq) if s == 1]
        if not ctx:
            continue
        lo, hi = offsets[ctx[0]][0], offsets[ctx[-1]][1]
        ids, types = enc["input_ids"][i], enc["token_type_ids"][i]
        if hard_negative:
            gold = pair.context.find(pair.answer_text)
            if gold < 0 or not (lo <= gold < hi):  # a window of the context without the answer
                return Window(ids, types, 0, 0)
            continue
        if answer is None:
            return Window(ids, types, 0, 0)
        a_start, a_text = answer
        assert a_start is not None
        a_end = a_start + len(a_text)
        if lo <= a_start and a_end <= hi:
            s = next(j for j in ctx if offsets[j][1] > a_start)
            e = max(j for j in ctx if offsets[j][0] < a_end)
            return Window(ids, types, s, e)
    return None
