"""Parse the model's output, keep only [n] markers that resolve to a passage, locate supporting quotes."""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

from qa_service.ingest.chunking import sentences
from qa_service.store.lexical import STOPWORDS, fold

_MARKER = re.compile(r"\[(\d{1,3}(?:\s*[,;]\s*\d{1,3})*)\]")
_SHORT = re.compile(r"^\s*\**\s*(?:short(?:\s+answer)?)\s*\**\s*[:：]\s*(.*)$", re.IGNORECASE | re.MULTILINE)
ANSWER_PREFIX = re.compile(r"^\s*\**\s*answer\s*\**\s*[:：]\s*", re.IGNORECASE)
_REFUSAL = re.compile(
    r"\b(i\s+(?:do\s+not|don'?t|don’t)\s+know|(?:passages?|articles?|context)\s+(?:does|do)\s+not\s+(?:contain|mention|say|provide|include|specify|state)|"
    r"no\s+(?:information|mention)|not\s+(?:mentioned|specified|stated|provided)|cannot\s+(?:be\s+)?(?:answer|determin)|unknown)\b",
    re.IGNORECASE,
)
REFUSAL_TEXT = "I don't know: the retrieved passages do not say."
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation + "“”‘’")


def normalize(text: str) -> str:
    """SQuAD normalisation: lower-case, strip punctuation and articles, collapse spaces."""
    text = text.lower().replace("’", "'").translate(_PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def tokens(text: str) -> list[str]:
    return normalize(text).split()


@dataclass
class Parsed:
    answer: str
    short_answer: str | None
    refused: bool
    cited: list[int]


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


def is_refusal(text: str) -> bool:
    return bool(_REFUSAL.search(text))


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
    if best is None or best[0] < 0.3:
        return None
    return start + best[1], start + best[2]


# the BM25 stop words, plus words that carry no claim in an answer
_STOP = STOPWORDS | frozenset("according article report said says not no yes also".split())


_WORD = re.compile(r"\d+(?:[.,]\d+)*|[^\W_]+")
_POSSESSIVE = re.compile(r"['’]s\b")


def _folded(text: str) -> list[str]:
    """Words for matching claims to evidence: accents folded ("Garzon" finds "Garzón"), split at punctuation
    ("US$8.8" gives "us" and "8.8"), numbers without their separators ("8,800" is "8800")."""
    text = _POSSESSIVE.sub("", fold(text)).replace("'", "")
    return [re.sub(r"[.,]", "", w) for w in _WORD.findall(text)]


def content_tokens(text: str) -> set[str]:
    return {t for t in _folded(_MARKER.sub(" ", text)) if t not in _STOP}


def _one_edit(a: str, b: str) -> bool:
    """True when b is a (one substitution, insertion or deletion) away from a."""
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) > len(b):
        a, b = b, a
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    return a[i + (len(a) == len(b)) :] == b[i + 1 :]


def _present(term: str, have: set[str]) -> bool:
    """The term, or a form of it, is in the evidence: "Australia" ~ "Australian", "6" ~ "6pm", "Saurday" ~ "Saturday"."""
    if term in have or term.rstrip("s") in have:
        return True
    if term.isdigit():
        return any(h.startswith(term) and h[len(term) :].isalpha() for h in have)
    if len(term) < 4:
        return False
    for h in have:
        if len(h) >= 4 and (h.startswith(term) or term.startswith(h)):
            return True
        if len(term) >= 5 and _one_edit(term, h):
            return True
    return False


def grounding(answer: str, question: str, evidence: str) -> float:
    """Share of the answer's new content words (those not already in the question) found in the evidence."""
    new = content_tokens(answer) - content_tokens(question)
    if not new:
        return 1.0
    have = set(_folded(evidence))
    return sum(_present(t, have) for t in new) / len(new)


_KEY = re.compile(r"(?<![\w'’])(\d[\d,.]*\d|\d|[A-Z][\w'’-]+)")


def unechoed(short: str | None, answer: str, question: str) -> str | None:
    """A short answer made only of the question's own words ("Lee Rigby" for "Who was charged for stabbing Lee
    Rigby?") restates the question; the answer sentence's longest run of words the question lacks is the answer."""
    asked = content_tokens(question)
    said = content_tokens(short or "")
    if not said or not said <= asked:
        return short
    best: list[str] = []
    run: list[tuple[str, set[str]]] = []
    for word in [*strip_markers(answer).split(), ""]:
        terms = content_tokens(word)
        if word and not terms & asked:
            run.append((word, terms))
            continue
        while run and not run[0][1]:
            run.pop(0)
        while run and not run[-1][1]:
            run.pop()
        if len(run) > len(best):
            best = [w for w, _ in run]
        run = []
    return " ".join(best).strip(" .,;:") or short


def key_terms(question: str) -> list[str]:
    """Numbers and capitalised names of the question, its first word aside."""
    first = question.split(maxsplit=1)[0] if question.split() else ""
    return [w for w in _KEY.findall(question) if w != first and normalize(w) not in _STOP and _folded(w)]


def missing_key_terms(question: str, evidence: str) -> list[str]:
    """The question's key terms that no passage mentions."""
    have = set(_folded(evidence))
    return [w for w in key_terms(question) if not all(_present(t, have) for t in _folded(w))]


_QUANTITY = re.compile(
    r"^\s*(how (many|much|old|long|far|big|large|tall|often))\b|\b(population|percentage|percent|number of|how many)\b", re.IGNORECASE
)
_NUMBER = re.compile(
    r"\d|\b(one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty|fifty|hundred|thousand|million|billion"
    r"|dozen|half|double|twice)\b",
    re.IGNORECASE,
)


def lacks_quantity(question: str, answer: str) -> bool:
    """A how-many / population / percentage question answered without any number is not answered."""
    return bool(_QUANTITY.search(question)) and not _NUMBER.search(strip_markers(answer))
