"""A declined answer is asked once more over wider evidence (QA_RETRY_WIDE).

The replies are scripted (the code path under test is what the service does after a reply); retrieval, the reader
and passage selection are real.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY

from qa_service.citations import AnswerFilter
from qa_service.config import Settings
from qa_service.embedding import SentenceTransformerEmbedder
from qa_service.ingest.loaders import Article, Loaded
from qa_service.llm.base import Message, StreamingLLM
from qa_service.service import QAService

# one long article: the narrow budget shows a few of its sentences, the wide one more
REPORT = " ".join(
    [
        "The regional council met in Braga on Tuesday to discuss the new tram line.",
        "Councillors argued for three hours about the route through the old town.",
        "The mayor, Ricardo Rio, said the tram would carry 40,000 passengers a day.",
        "Opponents said the works would close shops on the main square for a year.",
        "A petition against the route collected 12,000 signatures in two weeks.",
        "The transport minister promised national funds for half of the cost.",
        "Construction is due to start next spring and to last three years.",
        "The line will link the railway station with the university campus.",
        "Engineers from Porto designed the bridges over the river Este.",
        "The council will vote on the final route at its next meeting in March.",
        "Local buses will run on shorter routes while the works last.",
        "The contract was won by a consortium led by the firm Mota-Engil.",
    ]
)


class DecliningLLM(StreamingLLM):
    """Replies from a script, one reply per call, and records the passages each call was shown."""

    def __init__(self) -> None:
        self.replies: list[str] = []
        self.prompts: list[str] = []

    def stream(self, messages: list[Message], *, max_tokens: int, stop: list[str] | None = None) -> Iterator[str]:
        self.prompts.append(str(messages[-1]["content"]))
        reply = self.replies.pop(0)
        for i in range(0, len(reply), 3):  # a few characters at a time, as an engine streams tokens
            yield reply[i : i + 3]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, embedder: SentenceTransformerEmbedder) -> tuple[QAService, DecliningLLM]:
    llm = DecliningLLM()
    settings = Settings(data_dir=tmp_path_factory.mktemp("retry") / "store", context_tokens=64, reader_sure=0.0)
    svc = QAService(settings, embedder=embedder, llm=llm, load_llm=False)
    svc.ingest([Loaded("braga", Article(id="braga", title="Braga tram", text=REPORT))])
    return svc, llm


def _passages(prompt: str) -> str:
    return prompt.split("<passages>", 1)[1].split("</passages>", 1)[0]


def test_a_declined_answer_is_asked_again_over_wider_evidence(service: tuple[QAService, DecliningLLM]) -> None:
    svc, llm = service
    llm.prompts.clear()
    llm.replies = ["Answer: I don't know.", "Answer: The mayor said the tram would carry 40,000 passengers a day [1].\nSHORT: 40,000"]
    events = list(svc.ask_stream("How many people will ride the tram each day?"))
    streamed = "".join(e.data for e in events if e.event == "token")
    done = events[-1].data
    assert len(llm.prompts) == 2
    narrow, wide = (_passages(p) for p in llm.prompts)
    assert len(wide) > len(narrow) and narrow.split("\n", 2)[1][:40] in wide
    assert not done.refused and done.short_answer == "40,000" and done.citations
    assert "know" not in streamed and streamed.startswith("The mayor said")  # the declined reply was never shown


def test_a_second_decline_is_a_refusal_shown_once(service: tuple[QAService, DecliningLLM]) -> None:
    svc, llm = service
    llm.prompts.clear()
    llm.replies = ["Answer: I don't know.", "Answer: I do not know."]
    events = list(svc.ask_stream("Who will drive the first tram?"))
    tokens = [e.data for e in events if e.event == "token"]
    done = events[-1].data
    assert len(llm.prompts) == 2 and done.refused
    assert tokens == [done.answer]


def test_a_reply_grounding_refuses_is_withdrawn_and_asked_again(service: tuple[QAService, DecliningLLM]) -> None:
    svc, llm = service
    llm.prompts.clear()
    llm.replies = ["Answer: The tram will be painted green [1].\nSHORT: green", "Answer: Mota-Engil won the contract [1].\nSHORT: Mota-Engil"]
    before = REGISTRY.get_sample_value("qa_answer_retries_total", {"reason": "unsupported"}) or 0.0
    events = list(svc.ask_stream("Which company will build the tram?"))
    assert REGISTRY.get_sample_value("qa_answer_retries_total", {"reason": "unsupported"}) == before + 1
    kinds = [e.event for e in events]
    assert len(llm.prompts) == 2 and "retry" in kinds
    cut = kinds.index("retry")
    assert events[cut].data == "unsupported"
    assert "green" in "".join(e.data for e in events[:cut] if e.event == "token")
    assert "".join(e.data for e in events[cut:] if e.event == "token").startswith("Mota-Engil won")
    done = events[-1].data
    assert not done.refused and done.short_answer == "Mota-Engil"


def test_no_retry_when_wider_evidence_cannot_mend_the_refusal(service: tuple[QAService, DecliningLLM]) -> None:
    """A question naming something the archive never mentions stays refused: more of the same chunks cannot name it."""
    svc, llm = service
    llm.prompts.clear()
    for reply in ("Answer: Ricardo Rio opened it [1].\nSHORT: Ricardo Rio", "Answer: I don't know."):
        llm.prompts.clear()
        llm.replies = [reply]
        r = svc.ask("Who opened the tram line in Lyon?")
        assert r.refused and len(llm.prompts) == 1


def test_no_retry_when_turned_off_or_when_the_evidence_is_already_wide(service: tuple[QAService, DecliningLLM]) -> None:
    svc, llm = service
    original = svc.settings
    try:
        svc.settings = original.model_copy(update={"retry_wide": False})
        llm.prompts.clear()
        llm.replies = ["Answer: I don't know."]
        assert svc.ask("Who will drive the first tram?").refused and len(llm.prompts) == 1
        # the reader sure of no sentence: the first try already had the wide budget, so there is nothing wider
        svc.settings = original.model_copy(update={"reader_sure": 1.0})
        llm.prompts.clear()
        llm.replies = ["Answer: I don't know."]
        assert svc.ask("Who will drive the first tram?").refused and len(llm.prompts) == 1
    finally:
        svc.settings = original


@pytest.mark.parametrize(
    ("pieces", "shown", "declined"),
    [
        (["Answer", ":", " I", " don", "'t", " know", "."], "", True),
        (["Answer: I do", " not know who"], "", True),
        (["**Answer**: I", "ran's foreign", " minister [1].\nSHORT: x"], "Iran's foreign minister [1].\n", False),
        (["Answer: I", "t was Lisbon [1]."], "It was Lisbon [1].", False),
        (["Answer: I do"], "I do", False),  # a reply that ends while it could still have declined is shown as it is
    ],
)
def test_the_stream_holds_back_a_reply_that_declines(pieces: list[str], shown: str, declined: bool) -> None:
    f = AnswerFilter()
    out = "".join(f.feed(p) for p in pieces) + f.flush()
    assert out == shown and f.declined is declined


def test_the_retry_event_reaches_sse_clients() -> None:
    from qa_service.api.sse import _encode
    from qa_service.service import StreamEvent

    assert _encode(StreamEvent("retry", "unsupported")) == {"event": "retry", "data": '{"reason": "unsupported"}'}
    assert _encode(StreamEvent("token", "Lisbon")) == {"event": "token", "data": '{"text": "Lisbon"}'}
