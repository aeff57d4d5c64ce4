"""Decide whether the model's reply is a grounded answer: `ground(raw, passages, question) -> Verdict`.

Pure functions over text, so each rule is tested on its own. The reply is refused when the model says it does not
know, when it copied a passage instead of answering, when nothing it cites holds its words, or (strict mode) when
the question names something no passage mentions (and, given `known`, the archive never names) or asks for a
quantity the answer lacks.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from qa_service.citations import EXACT, Verdict, blank_markers, resolve_markers, split_output, strip_markers, support
from qa_service.passages import Passage
from qa_service.retrieval import Retrieved
from qa_service.text import STOPWORDS, fold, normalize

Known = Callable[[str], bool]
REFUSAL_TEXT = "I don't know: the retrieved passages do not say."
SHORT_WORDS = 6  # a marker-free answer this short is its own short answer
COPIED_WORDS = 25  # a longer answer with no short answer is a copied passage: the model found none
WEAK_SUPPORT = 0.5  # a short answer its cited passages barely hold is dropped rather than shown
CITE_FLOOR = 0.6  # an answer with no marker is cited to the passage holding this share of its words, else refused
GROUNDED = 0.5  # share of the answer's new words that its cited passages must hold

_REFUSAL = re.compile(
    r"\b(i\s+(?:do\s+not|don'?t|don’t)\s+know|(?:passages?|articles?|context)\s+(?:does|do)\s+not\s+(?:contain|mention|say|provide|include|specify|state)|"
    r"no\s+(?:information|mention)|not\s+(?:mentioned|specified|stated|provided)|cannot\s+(?:be\s+)?(?:answer|determin)|unknown)\b",
    re.IGNORECASE,
)
# the BM25 stop words, plus words that carry no claim in an answer
_STOP = STOPWORDS | frozenset("according article report said says not no yes also".split())
_WORD = re.compile(r"\d+(?:[.,]\d+)*|[^\W_]+")
_POSSESSIVE = re.compile(r"['’]s\b")
_KEY = re.compile(r"(?<![\w'’])(\d[\d,.]*\d|\d|[A-Z][\w'’-]+)")
_QUANTITY = re.compile(
    r"^\s*(how (many|much|old|long|far|big|large|tall|often))\b|\b(population|percentage|percent|number of|how many)\b", re.IGNORECASE
)
_NUMBER = re.compile(
    r"\d|\b(one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty|fifty|hundred|thousand|million|billion"
    r"|dozen|half|double|twice)\b",
    re.IGNORECASE,
)


def is_refusal(text: str) -> bool:
    return bool(_REFUSAL.search(text))


def _folded(text: str) -> list[str]:
    """Words for matching claims to evidence: accents folded ("Garzon" finds "Garzón"), split at punctuation
    ("US$8.8" gives "us" and "8.8"), numbers without their separators ("8,800" is "8800")."""
    text = _POSSESSIVE.sub("", fold(text)).replace("'", "")
    return [re.sub(r"[.,]", "", w) for w in _WORD.findall(text)]


def content_tokens(text: str) -> set[str]:
    return {t for t in _folded(blank_markers(text)) if t not in _STOP}


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


def missing_key_terms(question: str, evidence: str, known: Known | None = None) -> list[str]:
    """The question's key terms that no passage mentions (and, given `known`, that the archive never mentions)."""
    have = set(_folded(evidence))
    return [w for w in key_terms(question) if not all(_present(t, have) for t in _folded(w)) and not (known and known(w))]


def lacks_quantity(question: str, answer: str) -> bool:
    """A how-many / population / percentage question answered without any number is not answered."""
    return bool(_QUANTITY.search(question)) and not _NUMBER.search(strip_markers(answer))


def worth_asking(question: str, hits: list[Retrieved], passages: list[Passage], min_similarity: float) -> bool:
    """Call the LLM when a passage is close in meaning, or names everything the question names (an acronym
    such as "ATSB" embeds poorly but matches exactly)."""
    if max(h.similarity for h in hits) >= min_similarity:
        return True
    return bool(key_terms(question)) and not missing_key_terms(question, " ".join(p.text for p in passages))


def refusal(reason: str) -> Verdict:
    return Verdict(answer=REFUSAL_TEXT, short=None, cited=[], refused=True, reason=reason)


def _resupport(answer: str, prose: str, cited: list[int], short: str, passages: list[Passage]) -> tuple[str, list[int], str | None]:
    """The short answer must stand in a cited passage; else cite the passage that holds it, or drop it."""
    supports = {p.n: support(short, p.text) for p in passages}
    if any(supports[n] >= EXACT for n in cited):
        return answer, cited, short
    best = max(supports, key=lambda n: supports[n])
    if supports[best] >= EXACT:  # the model cited the wrong passage: point the markers at the one that holds the answer
        return (f"{prose[:-1].rstrip()} [{best}]." if prose.endswith(".") else f"{prose} [{best}]"), [best], short
    if not cited or max(supports[n] for n in cited) < WEAK_SUPPORT:
        return answer, cited, None
    return answer, cited, short


def _strict_refusal(
    answer: str, short: str | None, cited: list[int], passages: list[Passage], question: str, known: Known | None
) -> str | None:
    chunk_text = {p.n: p.hit.chunk.text for p in passages}
    if grounding(answer, question, " ".join(chunk_text[n] for n in cited)) < GROUNDED:
        return "unsupported"  # the answer says things its cited passages do not
    if missing_key_terms(question, " ".join(chunk_text.values()), known):
        return "missing_terms"  # the question names something no retrieved passage (or the archive) mentions
    if lacks_quantity(question, f"{answer} {short or ''}"):
        return "no_quantity"  # asked for a quantity, answered without one
    return None


def ground(raw: str, passages: list[Passage], question: str, *, strict: bool = True, known: Known | None = None) -> Verdict:
    """The model's raw reply -> a grounded answer whose every [n] resolves, or a refusal with its reason.

    `known(word)`: whether the archive mentions the word anywhere. Given it, a question's name that the passages
    lack refuses only when the archive has never seen it ("the 2026 Geneva summit" over articles that never name
    Geneva): a paraphrased question often names a country or weekday its answer's passage leaves out.
    """
    body, short = split_output(raw)
    answer, cited = resolve_markers(body, len(passages))
    short = unechoed(short, answer, question)
    if not passages or not answer or is_refusal(answer) or (short is not None and is_refusal(short)):
        return refusal("no_answer")
    prose = strip_markers(answer).strip()
    words = len(prose.split())
    if short is None and 0 < words <= SHORT_WORDS:
        short = prose.rstrip(".").strip() or None
    if short is None and words > COPIED_WORDS:
        return refusal("copied")
    if short:
        answer, cited, short = _resupport(answer, prose, cited, short, passages)
    if not cited:  # no marker and no short answer that a passage holds: cite the passage holding the answer, if any
        best = max(passages, key=lambda p: support(answer, p.text))
        if support(answer, best.text) < CITE_FLOOR:
            return refusal("uncited")
        cited, answer = [best.n], f"{answer.rstrip()} [{best.n}]"
    reason = _strict_refusal(answer, short, cited, passages, question, known) if strict else None
    return refusal(reason) if reason else Verdict(answer=answer, short=short, cited=cited)
