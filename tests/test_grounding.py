"""The checks between the model's reply and the user: when the LLM is called, and which replies are refused.

The replies are scripted (the code path under test is what happens to a given reply); retrieval, passage
selection and the store are real.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from qa_service import grounding as cit
from qa_service.config import Settings
from qa_service.embedding import SentenceTransformerEmbedder
from qa_service.ingest.loaders import Article, Loaded
from qa_service.llm.base import Message, StreamingLLM
from qa_service.service import QAService
from qa_service.store.base import Where

DOCS = {
    "visit": "Egyptian President Mohamed Morsi began an official state visit to China last Tuesday. Trade between the two "
    "countries reached US$8.8 billion. Firing reportedly continued for several hours late on Saturday night.",
    "search": "The equipment can search far above the ocean floor, according to Martin Dolan of the Australian Transport "
    "Safety Bureau (ATSB), which is coordinating the search.",
    "games": "The ceremony was attended by the Vice-President of Colombia, Angelino Garzón. When Garzón apologised for the "
    "absent president, the public exploded in whistles.",
}


class ScriptedLLM(StreamingLLM):
    def __init__(self) -> None:
        self.reply = ""
        self.calls = 0

    def stream(self, messages: list[Message], *, max_tokens: int, stop: list[str] | None = None) -> Iterator[str]:
        self.calls += 1
        yield self.reply


@pytest.fixture(scope="module")
def scripted(tmp_path_factory: pytest.TempPathFactory, embedder: SentenceTransformerEmbedder) -> tuple[QAService, ScriptedLLM]:
    llm = ScriptedLLM()
    svc = QAService(Settings(data_dir=tmp_path_factory.mktemp("grounding") / "store"), embedder=embedder, llm=llm, load_llm=False)
    svc.ingest([Loaded(k, Article(id=k, title=k.title(), text=v)) for k, v in DOCS.items()])
    return svc, llm


@pytest.mark.parametrize(
    ("question", "reply", "short"),
    [
        # the question's name without its accent
        ("What is the first name of Garzon?", "Answer: Angelino Garzón [1].\nSHORT: Angelino", "Angelino"),
        # a typo in the question, and a word of the answer ("Egypt") that the passage has as "Egyptian"
        ("Where did Morsi go on a visit on Saurday?", "Answer: Egypt's president went to China [1].\nSHORT: China", "China"),
        ("What increased to US$ 8.8 billion?", "Answer: Trade between the two countries [1].\nSHORT: Trade", "Trade"),
        # a short answer that only repeats the question's words: the answer sentence says who
        (
            "Who is coordinating the search?",
            "Answer: Australian Transport Safety Bureau is coordinating the search [1].\nSHORT: the search",
            "Australian Transport Safety Bureau",
        ),
    ],
)
def test_supported_reply_is_kept(scripted: tuple[QAService, ScriptedLLM], question: str, reply: str, short: str) -> None:
    svc, llm = scripted
    llm.reply = reply
    r = svc.ask(question)
    assert not r.refused, r
    assert r.short_answer == short
    assert r.citations and all(short.lower() in c.text.lower() for c in r.citations)


@pytest.mark.parametrize(
    ("question", "reply"),
    [
        # the question names a city no passage mentions
        ("Who is the mayor of Lyon?", "Answer: Mohamed Morsi is the mayor [1].\nSHORT: Mohamed Morsi"),
        # the answer's words are nowhere in its passage
        ("Where did Morsi go?", "Answer: Morsi flew to Brazil for a summit with Lula [1].\nSHORT: Brazil"),
        ("How many hours did the firing continue?", "Answer: The firing continued all night [1]."),
    ],
)
def test_unsupported_reply_is_refused(scripted: tuple[QAService, ScriptedLLM], question: str, reply: str) -> None:
    svc, llm = scripted
    llm.reply = reply
    r = svc.ask(question)
    assert r.refused and r.citations == [] and r.short_answer is None


def test_acronym_question_reaches_the_model_despite_low_similarity(scripted: tuple[QAService, ScriptedLLM]) -> None:
    svc, llm = scripted
    question = "What does the T stand for in ATSB?"
    best = max(h.similarity for h in svc.retriever.search(question, 3, Where()))
    # on a large corpus such questions score below the threshold (0.05 to 0.09 on QAMR); raise it past this one
    original = svc.settings
    svc.settings = original.model_copy(update={"min_similarity": best + 0.01})
    try:
        llm.reply, before = "Answer: Transport, as in Australian Transport Safety Bureau [1].\nSHORT: Transport", llm.calls
        r = svc.ask(question)
        assert llm.calls == before + 1
        assert not r.refused and r.short_answer == "Transport"
        # a question with no name or number to match exactly is refused without calling the model
        before = llm.calls
        assert svc.ask("what does the first letter stand for").refused
        assert llm.calls == before
    finally:
        svc.settings = original


def test_a_short_answer_that_restates_the_question_is_replaced_by_what_the_answer_adds() -> None:
    answer = "A second man was formally charged yesterday for the killing of Lee Rigby [1]."
    assert cit.unechoed("Lee Rigby", answer, "Who was charged for stabbing Lee Rigby?") == "second man was formally"
    assert cit.unechoed("Lee Rigby's", "Lee Rigby [1].", "Who was charged for stabbing Lee Rigby?") == "Lee Rigby's"  # nothing else to offer
    assert cit.unechoed("Michael Adebolajo", answer, "Who was charged for stabbing Lee Rigby?") == "Michael Adebolajo"
    assert cit.unechoed("yes", "Yes, he did [1].", "Did he resign?") == "yes"  # no content words: left alone
    assert cit.unechoed(None, answer, "Who was charged?") is None


def test_term_matching_tolerates_forms_and_typos_but_not_other_words() -> None:
    have = {"australian", "saturday", "6pm", "ratings", "allan"}
    assert all(cit._present(t, have) for t in ("australia", "saurday", "6", "rating", "allen"))  # noqa: SLF001
    assert not any(cit._present(t, have) for t in ("austria", "sunday", "60", "brazil"))  # noqa: SLF001
    assert cit.key_terms("Who did Canada lose to, scoring just 55 points?") == ["Canada", "55"]
    assert cit.missing_key_terms("Where did Morsi meet Lula?", "Morsi visited China") == ["Lula"]


def test_a_name_the_passages_lack_refuses_only_when_the_archive_never_names_it(scripted: tuple[QAService, ScriptedLLM]) -> None:
    """Paraphrased questions name a country or a weekday that the answer's passage leaves out; the rule that
    refuses them keeps to names the archive has never seen (strict grounding, QA_MISSING_TERMS=archive)."""
    svc, _ = scripted
    known = svc.lexical.mentions
    assert known("Garzón") and known("Garzon") and known("ATSB") and known("Saturday")
    assert not known("Lyon") and not known("Geneva")
    question, shown = "Where did Morsi meet Garzón in Lyon?", "Morsi visited China"
    assert cit.missing_key_terms(question, shown) == ["Garzón", "Lyon"]
    assert cit.missing_key_terms(question, shown, known) == ["Lyon"]
