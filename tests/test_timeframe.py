"""Time-aware answers: relative expressions resolved against as_of, the future-article filter, the date prior, and
dated answers; on the real embedder and an embedded Chroma (the answer test on the real LLM)."""

from __future__ import annotations

import datetime as dt

import pytest

from qa_service.config import Settings
from qa_service.embedding import SentenceTransformerEmbedder
from qa_service.errors import BadRequest
from qa_service.ingest.loaders import Article, Loaded
from qa_service.service import QAService
from qa_service.timeframe import dated, frame, prior, resolve

THURSDAY = dt.date(2023, 1, 5)
D = dt.date

# (question, window resolved on Thursday 5 Jan 2023 or None)
TABLE = [
    ("Which former pope was laid to rest this week?", (D(2022, 12, 30), D(2023, 1, 5))),
    ("What happened earlier this week in Congress?", (D(2022, 12, 30), D(2023, 1, 5))),
    ("What did the Fed announce last week?", (D(2022, 12, 26), D(2023, 1, 1))),
    ("Who won the game on Monday?", (D(2023, 1, 2), D(2023, 1, 3))),
    ("What did the governor say on Thursday?", (D(2023, 1, 5), D(2023, 1, 5))),
    ("Who resigned yesterday?", (D(2023, 1, 4), D(2023, 1, 4))),
    ("What was announced today?", (D(2023, 1, 5), D(2023, 1, 5))),
    ("Which team won the Super Bowl in February?", (D(2022, 2, 1), D(2022, 2, 28))),
    ("What did the court decide in December?", (D(2022, 12, 1), D(2022, 12, 31))),
    ("Which record was broken this year?", (D(2023, 1, 1), D(2023, 1, 5))),
    ("Who was named person of the year last year?", (D(2022, 1, 1), D(2022, 12, 31))),
    ("What happened this month?", (D(2023, 1, 1), D(2023, 1, 5))),
    ("Which bank failed last month?", (D(2022, 12, 1), D(2022, 12, 31))),
    ("Who recently bought the company?", (D(2022, 12, 22), D(2023, 1, 5))),
    ("What storm hit the coast in the past two weeks?", (D(2022, 12, 22), D(2023, 1, 5))),
    ("Which company closed three days ago?", (D(2023, 1, 1), D(2023, 1, 3))),
    ("Who won the March 3 election?", (D(2022, 3, 3), D(2022, 3, 4))),
    ("What happened on March 3, 2021?", (D(2021, 3, 3), D(2021, 3, 4))),
    ("Who led the polls in May 2020?", (D(2020, 5, 1), D(2020, 5, 31))),
    ("What did the report find in 2021?", (D(2021, 1, 1), D(2021, 12, 31))),
    ("Who may become the next speaker of the House?", None),  # the verb, not the month
    ("Where did the envoys meet?", None),
    ("What will happen next week?", None),  # the future names no past window: recency decides
    ("Who won the Marseille marathon?", None),
]


@pytest.mark.parametrize(("question", "window"), TABLE)
def test_relative_expressions_resolve_against_as_of(question: str, window: tuple[dt.date, dt.date] | None) -> None:
    assert resolve(question, THURSDAY) == window


def test_as_of_defaults_to_today_and_only_a_given_one_filters() -> None:
    tf = frame("what happened this week?", today=lambda: D(2026, 12, 5))
    assert tf.as_of == D(2026, 12, 5) and not tf.filter and tf.window == (D(2026, 11, 29), D(2026, 12, 5))
    assert frame("x", "2023-01-05T23:30:00-08:00").as_of == THURSDAY  # a datetime counts in its own time zone
    assert frame("x", "2023-01-05").filter
    with pytest.raises(ValueError, match="ISO date"):
        frame("x", "last Tuesday")
    assert frame("what happened this week?", "0001-01-01").window is None  # a window before year 1 is no window


def test_prior_is_one_in_the_window_and_halves_outside() -> None:
    tf = frame("who won this week?", THURSDAY)
    assert prior(D(2023, 1, 2), tf, 7) == 1.0
    assert prior(D(2022, 12, 23), tf, 7) == pytest.approx(0.5)  # a week before the window opens
    assert prior(None, tf, 7) is None
    plain = frame("who won?", THURSDAY)
    assert prior(D(2023, 1, 5), plain, 60) == 1.0
    assert prior(D(2022, 11, 6), plain, 60) == pytest.approx(0.5)
    assert prior(D(2022, 11, 6), plain, 60, newest=D(2022, 11, 6)) == 1.0  # recency counts from the newest candidate


def test_dated_answer_names_its_source_date() -> None:
    assert dated("Liberty and Bell were pardoned [1].", "2023-11-20") == "As of 20 Nov 2023: Liberty and Bell were pardoned [1]."
    assert dated("x [1].", None) == "x [1]."


TURKEYS = {
    # written for these tests: three years of the same story, each naming other birds
    2021: ("2021-11-19", "The president pardoned two turkeys named Peanut Butter and Jelly at the White House on Friday."),
    2022: ("2022-11-21", "The president pardoned two turkeys named Chocolate and Chip at the White House on Monday."),
    2023: ("2023-11-20", "The president pardoned two turkeys named Liberty and Bell at the White House on Monday."),
}
UNDATED = "Turkeys are large birds native to North America; farmers in Minnesota raise more of them than any other state."
QUESTION = "Which turkeys did the president pardon this week?"


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory, embedder: SentenceTransformerEmbedder) -> QAService:
    service = QAService(Settings(data_dir=tmp_path_factory.mktemp("time") / "store"), embedder=embedder, load_llm=False)
    items = [
        Loaded(str(y), Article(id=f"turkeys-{y}", title="Thanksgiving turkeys pardoned", text=text, published_at=day))
        for y, (day, text) in TURKEYS.items()
    ]
    service.ingest([*items, Loaded("birds", Article(id="birds", title="Turkeys", text=UNDATED))])
    return service


def docs(svc: QAService, question: str, **kw: object) -> list[str]:
    return [r.doc_id for r in svc.search(question, 4, **kw)]  # type: ignore[arg-type]


@pytest.mark.parametrize("year", [2021, 2022, 2023])
def test_this_week_finds_that_years_article_and_hides_later_ones(svc: QAService, year: int) -> None:
    asked = f"{year}-11-23"
    got = docs(svc, QUESTION, as_of=asked)
    assert got[0] == f"turkeys-{year}"
    assert all(int(d.split("-")[1]) <= year for d in got if d.startswith("turkeys-"))  # later years are invisible
    assert "birds" in got  # undated articles stay visible


def test_without_as_of_the_newest_article_comes_first_and_nothing_is_hidden(svc: QAService) -> None:
    got = docs(svc, "Which turkeys did the president pardon?")
    assert got[0] == "turkeys-2023" and set(got) == {"turkeys-2021", "turkeys-2022", "turkeys-2023", "birds"}


def test_a_named_month_outranks_recency(svc: QAService) -> None:
    assert docs(svc, "Which turkeys did the president pardon in November 2021?")[0] == "turkeys-2021"


def test_the_prior_changes_nothing_in_an_undated_store(tmp_path_factory: pytest.TempPathFactory, embedder: SentenceTransformerEmbedder) -> None:
    texts = {f"d{i}": f"Report {i}: the council voted on the bridge budget, item {i}." for i in range(6)}
    ranked = []
    for weight in (0.0, 5.0):
        s = Settings(data_dir=tmp_path_factory.mktemp("undated") / "store", time_weight=weight)
        service = QAService(s, embedder=embedder, load_llm=False)
        service.ingest([Loaded(k, Article(id=k, title=k, text=v)) for k, v in texts.items()])
        ranked.append([(r.doc_id, r.score) for r in service.search("What did the council vote on this week?", 6, as_of="2023-01-05")])
    assert ranked[0] == ranked[1]


def test_bad_as_of_is_a_clear_error(svc: QAService) -> None:
    with pytest.raises(BadRequest, match="ISO date"):
        svc.search(QUESTION, as_of="next Tuesday")
