"""Text helpers every stage shares: accent folding, BM25 tokens, SQuAD normalisation, sentence spans.

This is the bottom floor: it imports nothing from the project, so retrieval, grounding, citations and eval can
all use the same definitions of "a word" and "a sentence" without importing each other.
"""

from __future__ import annotations

import re
import string
import threading
import unicodedata

STOPWORDS = frozenset(
    """a an and are as at be been but by did do does for from had has have he her his how i if in into is it its
    of on or she so than that the their them then there these they this to was were what when where which who
    whom whose why will with would you your""".split()
)
_TOKEN = re.compile(r"\w+", re.UNICODE)
_stemmers = threading.local()


def fold(text: str) -> str:
    """Lower-case and strip accents, so a question typed as "Garzon" matches "Garzón"."""
    low = text.lower().replace("’", "'")
    if low.isascii():  # most news text: NFKD would change nothing, and it is two thirds of the cost of fold
        return low
    decomposed = unicodedata.normalize("NFKD", low)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def tokenize(text: str) -> list[str]:
    """Folded, stop-worded, Snowball-stemmed words (PyStemmer; a stemmer object is not thread-safe)."""
    stemmer = getattr(_stemmers, "english", None)
    if stemmer is None:
        import Stemmer

        stemmer = _stemmers.english = Stemmer.Stemmer("english")
    words = [t for t in _TOKEN.findall(fold(text)) if t not in STOPWORDS and len(t) > 1]
    return list(stemmer.stemWords(words))


_PART = re.compile(r"(?:,?\s+(?:and|but)\s+|[;?]\s+)(?=(?:who|whom|whose|what|where|when|which|why|how)\b)", re.IGNORECASE)


def question_parts(question: str) -> list[str]:
    """The questions a multi-part question asks ("who agreed to mediate, and where did the envoys meet?"), split where
    a conjunction opens a new wh-question or a "?" or ";" ends one; a one-part question is itself."""
    parts = [p.strip(" ,;") for p in _PART.split(question.strip())]
    parts = [p for p in parts if len(tokenize(p)) >= 1]
    return parts if len(parts) > 1 else [question]


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation + "“”‘’")


def normalize(text: str) -> str:
    """SQuAD normalisation: lower-case, strip punctuation and articles, collapse spaces."""
    text = text.lower().replace("’", "'").translate(_PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def tokens(text: str) -> list[str]:
    return normalize(text).split()


_SENT = re.compile(r"[^.!?\n]+(?:[.!?]+[\"'”’)\]]*|\n|$)")


def sentences(text: str) -> list[tuple[int, int]]:
    """Sentence spans (start, end) within text, whitespace-trimmed. Good enough for news prose."""
    spans: list[tuple[int, int]] = []
    for m in _SENT.finditer(text):
        s, e = m.start(), m.end()
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if e > s:
            spans.append((s, e))
    # rejoin splits with no space after them ("20.32", "U.S.-led"), after abbreviations such as "Jr." and
    # initials, and before a lower-case word
    merged: list[tuple[int, int]] = []
    for s, e in spans:
        if merged:
            prev = text[merged[-1][0] : merged[-1][1]]
            last_word = prev.rsplit(" ", 1)[-1]
            abbreviation = len(last_word) <= 4 and last_word.endswith(".") and last_word[:1].isupper()
            if s == merged[-1][1] or abbreviation or text[s : s + 1].islower():
                merged[-1] = (merged[-1][0], e)
                continue
        merged.append((s, e))
    return merged
