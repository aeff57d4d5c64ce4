"""The model's output format and what a citation points at: [n] markers, the SHORT: line, supporting quotes.

`cite` turns a grounded verdict into the response's citations, each with the sentence of the source document that
best supports the answer, in document offsets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from qa_service.passages import Passage
from qa_service.schemas import Citation, Quote
from qa_service.store.base import DocRecord
from qa_service.text import normalize, sentences, tokens

_MARKER = re.compile(r"\[(\d{1,3}(?:\s*[,;]\s*\d{1,3})*)\]")
_SHORT = re.compile(r"^\s*\**\s*(?:short(?:\s+answer)?)\s*\**\s*[:：]\s*(.*)$", re.IGNORECASE | re.MULTILINE)
ANSWER_PREFIX = re.compile(r"^\s*\**\s*answer\s*\**\s*[:：]\s*", re.IGNORECASE)
EXACT = 0.99  # support at which a phrase counts as found in a passage (token order aside)
QUOTE_FLOOR = 0.3  # below this, no sentence of the region supports the answer well enough to quote


@dataclass
class Verdict:
    """What grounding decided: the answer text with resolved markers, its short form, the passages it cites."""

    answer: str
    short: str | None
    cited: list[int]
    refused: bool = False
    reason: str | None = None  # why it was refused, for logs and evaluation


def split_output(raw: str) -> tuple[str, str | None]:
    """Separate the prose answer from the SHORT: line."""
    m = _SHORT.search(raw)
    short = None
    body = raw
    if m:
        short = m.group(1).strip().strip("*").strip()
        body = raw[: m.start()] + raw[m.end() :]
    body = ANSWER_PREFIX.sub("", body.strip()).strip()
    if short is not None:
        short = _MARKER.sub("", short).strip().rstrip(".").strip("\"'“” ") or None
    return body, short


def strip_markers(text: str) -> str:
    return _MARKER.sub("", text)


def blank_markers(text: str) -> str:
    """Markers replaced by a space, so "word[1]next" still splits into two words."""
    return _MARKER.sub(" ", text)


def resolve_markers(answer: str, n_passages: int) -> tuple[str, list[int]]:
    """Drop markers that point to no passage; return the cleaned answer and the cited numbers in order."""
    cited: list[int] = []

    def repl(m: re.Match[str]) -> str:
        nums = [int(x) for x in re.split(r"[,;]", m.group(1))]
        keep = [n for n in nums if 1 <= n <= n_passages]
        for n in keep:
            if n not in cited:
                cited.append(n)
        return "".join(f"[{n}]" for n in keep)

    cleaned = _MARKER.sub(repl, answer)
    cleaned = re.sub(r"\s+([.,;:])", r"\1", re.sub(r"[ \t]{2,}", " ", cleaned)).strip()
    return cleaned, cited


def support(phrase: str, passage: str) -> float:
    """Share of the phrase's normalised tokens found in the passage (1.0 = all present)."""
    p = tokens(phrase)
    if not p:
        return 0.0
    if normalize(phrase) in normalize(passage):
        return 1.0
    have = set(tokens(passage))
    return sum(t in have for t in p) / len(p)


def locate_quote(doc_text: str, start: int, end: int, evidence: list[str]) -> tuple[int, int] | None:
    """The sentence inside doc_text[start:end] that best supports the evidence strings, in document offsets."""
    region = doc_text[start:end]
    best: tuple[float, int, int] | None = None
    ev_tokens = {t for e in evidence for t in tokens(e)}
    if not ev_tokens:
        return None
    for s, e in sentences(region):
        sent = region[s:e]
        score = max((support(ev, sent) for ev in evidence if ev), default=0.0)
        overlap = len(ev_tokens & set(tokens(sent))) / len(ev_tokens)
        key = (score + 0.5 * overlap, s, e)
        if best is None or key[0] > best[0]:
            best = key
    if best is None or best[0] < QUOTE_FLOOR:
        return None
    return start + best[1], start + best[2]


def _quote(doc: DocRecord, passage: Passage, short: str | None, evidence: list[str]) -> Quote | None:
    """Prefer the excerpt sentence that holds the short answer; else the chunk's best-supporting sentence."""
    span = None
    for s, e in passage.spans:
        span = locate_quote(doc.text, s, e, evidence) if short and support(short, doc.text[s:e]) >= EXACT else None
        if span:
            break
    c = passage.hit.chunk
    span = span or locate_quote(doc.text, c.start, c.end, evidence)
    return Quote(text=doc.text[span[0] : span[1]], start=span[0], end=span[1]) if span else None


def cite(verdict: Verdict, passages: list[Passage], documents: dict[str, DocRecord]) -> list[Citation]:
    """One citation per cited passage, in the order the answer cites them."""
    by_n = {p.n: p for p in passages}
    evidence = [e for e in (verdict.short, strip_markers(verdict.answer)) if e]
    out: list[Citation] = []
    for n in verdict.cited:
        p = by_n[n]
        c = p.hit.chunk
        doc = documents.get(c.doc_id)
        quote = _quote(doc, p, verdict.short, evidence) if doc is not None else None
        out.append(
            Citation(n=n, doc_id=c.doc_id, chunk_id=c.chunk_id, title=c.title, source=c.source, url=c.url, published_at=c.published_at, text=c.text, quote=quote)
        )
    return out


_DECLINES = ("i don't know", "i don’t know", "i do not know")


def _declining(text: str) -> bool | None:
    """Whether a reply opens with "I don't know": True, False, or None while its first words still leave it open."""
    t = text.lstrip(" *").lower()
    if any(t.startswith(d) for d in _DECLINES):
        return True
    return None if any(d.startswith(t) for d in _DECLINES) else False


class AnswerFilter:
    """Streams the prose answer and holds back the trailing SHORT: line, which is metadata, not prose. A reply that
    opens with "I don't know" is not streamed at all (`declined`): the service may ask again over wider evidence, and
    a refusal is shown in its own words."""

    def __init__(self) -> None:
        self.buf = ""
        self.hidden = False
        self.started = False
        self.opening = True  # nothing shown yet: the reply may still be a refusal
        self.declined = False

    def feed(self, delta: str) -> str:
        if self.hidden:
            return ""
        self.buf += delta
        if not self.started:
            stripped = self.buf.lstrip(" *")
            if len(stripped) < 7 and "answer:".startswith(stripped.lower()):
                return ""
            self.buf = ANSWER_PREFIX.sub("", self.buf, count=1)
            self.started = True
        if self.opening:
            verdict = _declining(self.buf)
            if verdict is None:
                return ""
            if verdict:
                self.hidden = self.declined = True
                self.buf = ""
                return ""
            self.opening = False
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
