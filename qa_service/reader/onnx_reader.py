"""Run the exported reader: for each passage, its best answer span and how much the reader prefers that span to
"no answer". Each window runs alone (batch of one, no padding), so an int8 model's per-batch activation scales
never depend on what else is being read: the same passage gives the same span on every call."""

from __future__ import annotations

import json
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qa_service.reader.export import CALIBRATION, INPUTS, ONNX_NAME

MAX_QUESTION_TOKENS = 64  # a longer question is cut: the window must keep room for the passage


@dataclass(frozen=True)
class Span:
    passage: int  # index into the passages read
    start: int  # character offsets in that passage
    end: int
    text: str
    score: float  # best span logit sum minus the no-answer logit sum: above 0 the reader prefers the span


class OnnxReader:
    def __init__(self, folder: Path, *, threads: int = 2, max_length: int = 192, stride: int = 64, max_answer_tokens: int = 30) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length, stride=stride, strategy="only_second")
        self._words = Tokenizer.from_file(str(folder / "tokenizer.json"))  # no truncation: measures the question
        self._words.no_truncation()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(folder / ONNX_NAME), opts, providers=["CPUExecutionProvider"])
        self.threads = max(1, threads)
        self.max_answer_tokens = max_answer_tokens
        self._lock = threading.Lock()
        cal = folder / CALIBRATION
        self.calibration = json.loads(cal.read_text()) if cal.exists() else {"scale": 1.0, "bias": 0.0}

    def confidence(self, score: float) -> float:
        """P(the span is right), from a logistic fit of span correctness on the reader's score (held-out pairs)."""
        if not math.isfinite(score):
            return 0.0
        z = self.calibration["scale"] * score + self.calibration["bias"]
        return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))

    def score_for(self, probability: float) -> float:
        """The score at which `confidence` reaches `probability`: a threshold set as a calibrated probability means
        the same for any exported reader, where a score threshold would have to be re-derived for each (their logit
        scales differ by a logit or more). 0 and 1 give -inf and +inf."""
        scale, bias = self.calibration["scale"], self.calibration["bias"]
        if probability <= 0.0:
            return float("-inf")
        if probability >= 1.0 or scale <= 0:
            return float("inf")
        return (math.log(probability / (1.0 - probability)) - bias) / scale

    def _question(self, question: str) -> str:
        enc = self._words.encode(question, add_special_tokens=False)
        if len(enc.ids) <= MAX_QUESTION_TOKENS:
            return question
        return question[: enc.offsets[MAX_QUESTION_TOKENS - 1][1]]

    def _window_logits(self, enc: Any) -> tuple[np.ndarray, np.ndarray]:
        feed = {
            "input_ids": np.array([enc.ids], dtype=np.int64),
            "attention_mask": np.array([enc.attention_mask], dtype=np.int64),
            "token_type_ids": np.array([enc.type_ids], dtype=np.int64),
        }
        start, end = self.session.run(None, {k: feed[k] for k in INPUTS})
        return np.asarray(start[0], dtype=np.float64), np.asarray(end[0], dtype=np.float64)

    def _windows(self, question: str, text: str) -> list[Any]:
        """The question (already cut) with each window of the passage, as the model reads them."""
        first = self.tokenizer.encode(question, text)
        return [first, *first.overflowing]

    def _run(self, windows: list[Any]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each window's start and end logits, each run alone; on up to `threads` threads."""
        with self._lock:
            if self.threads > 1 and len(windows) > 1:
                with ThreadPoolExecutor(min(self.threads, len(windows))) as pool:
                    return list(pool.map(self._window_logits, windows))
            return [self._window_logits(w) for w in windows]

    @staticmethod
    def _null(logits: list[tuple[np.ndarray, np.ndarray]]) -> float:
        """The passage's "no answer" score: its [CLS] start + end logits, in the window that likes it least."""
        return min((float(s[0] + e[0]) for s, e in logits), default=float("inf"))

    def _pairs(self, enc: Any, s: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One window's span scores (start + end logit for every start, end token), which of them are answer-shaped
        (both ends in the passage, end after start, at most max_answer_tokens), and the tokens' passage offsets."""
        ctx = np.array([x == 1 for x in enc.sequence_ids])
        n = len(s)
        i, j = np.indices((n, n))
        ok = ctx[:, None] & ctx[None, :] & (j >= i) & (j - i < self.max_answer_tokens)
        return s[:, None] + e[None, :], ok, np.array(enc.offsets)

    def _best(self, passage: int, text: str, windows: list[Any], logits: list[tuple[np.ndarray, np.ndarray]]) -> Span:
        best: tuple[float, int, int] | None = None
        for enc, (s, e) in zip(windows, logits, strict=True):
            pair, ok, offsets = self._pairs(enc, s, e)
            if not ok.any():
                continue
            a, b = np.unravel_index(int(np.argmax(np.where(ok, pair, -np.inf))), pair.shape)
            cand = (float(pair[a, b]), int(offsets[a][0]), int(offsets[b][1]))
            if best is None or cand[0] > best[0]:
                best = cand
        if best is None:
            return Span(passage, 0, 0, "", float("-inf"))
        return Span(passage, best[1], best[2], text[best[1] : best[2]], best[0] - self._null(logits))

    def range_scores(self, question: str, passages: list[str], ranges: list[list[tuple[int, int]]]) -> list[list[float]]:
        """For each character range of each passage (its sentences), the best span inside it minus "no answer": how
        sure the reader is that the range holds the answer; -inf for a range no window holds. All passages' windows
        run as one batch of single-window calls, as in `read`."""
        question = self._question(question)
        encoded = [self._windows(question, text) for text in passages]
        logits = iter(self._run([w for windows in encoded for w in windows]))
        out: list[list[float]] = []
        for windows, spans in zip(encoded, ranges, strict=True):
            window_logits = [next(logits) for _ in windows]
            best = np.full(len(spans), -np.inf)
            for enc, (s, e) in zip(windows, window_logits, strict=True):
                pair, ok, offsets = self._pairs(enc, s, e)
                for k, (a, b) in enumerate(spans):
                    inside = (offsets[:, 0] >= a) & (offsets[:, 1] <= b)
                    hold = ok & inside[:, None] & inside[None, :]
                    if hold.any():
                        best[k] = max(best[k], float(pair[hold].max()))
            null = self._null(window_logits)
            out.append([float(x) - null for x in best])
        return out

    def score_span(self, question: str, passage: str, start: int, end: int) -> float:
        """The reader's score for a given span of a passage (character offsets): how much it prefers that span to
        "no answer", in the best window holding it; -inf when no window holds it or it is too long."""
        windows = self._windows(self._question(question), passage)
        logits = self._run(windows)
        best = float("-inf")
        for enc, (s, e) in zip(windows, logits, strict=True):
            ctx = [j for j, q in enumerate(enc.sequence_ids) if q == 1]
            inside = [j for j in ctx if enc.offsets[j][1] > start and enc.offsets[j][0] < end]
            if inside and enc.offsets[ctx[0]][0] <= start and end <= enc.offsets[ctx[-1]][1] and len(inside) <= self.max_answer_tokens:
                best = max(best, float(s[inside[0]] + e[inside[-1]]))
        return best - self._null(logits)

    def read(self, question: str, passages: list[str]) -> list[Span]:
        """The best span of each passage, in the passages' order."""
        question = self._question(question)
        encoded = [self._windows(question, text) for text in passages]
        logits = iter(self._run([w for windows in encoded for w in windows]))
        return [self._best(p, text, encoded[p], [next(logits) for _ in encoded[p]]) for p, text in enumerate(passages)]
