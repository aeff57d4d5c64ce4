"""Time in a question: the moment it is asked (`as_of`), the date window its words point at ("this week", "in
February"), and the prior that prefers articles from that window, or recent ones when the question names none.

News repeats itself (every year has a Super Bowl), so an archive holds last year's answer to today's question; the
window and the recency prior rank this year's article first. The window is a prior, not a filter: article dates are
sometimes missing or wrong. Only `as_of` given by the caller filters (articles published later are invisible), so
an evaluation can replay the past.

Phrases are resolved by a small table of patterns, not dateparser: measured on quiz questions, dateparser's
search_dates reads the verb "may" as the month, gives a point in time where the phrase names a span ("this week"),
and costs 0.4 s to import; the spans below are what the ranking needs.
"""

from __future__ import annotations

import calendar
import datetime as dt
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

from qa_service.store.base import date_key, key_date

Window = tuple[dt.date, dt.date]
AsOf = dt.date | dt.datetime | str

MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_name) if name}
MONTHS |= {name.lower(): i for i, name in enumerate(calendar.month_abbr) if name and name != "May"}
WEEKDAYS = {name.lower(): i for i, name in enumerate(calendar.day_name)}
_NUMBERS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "few": 3, "several": 5}
_UNIT_DAYS = {"day": 1, "week": 7, "month": 30, "year": 365}
RECENT_DAYS = 14  # "recently", "lately", "latest": the last two weeks


@dataclass(frozen=True)
class TimeFrame:
    """When a question is asked and what span of dates it points at."""

    as_of: dt.date
    filter: bool  # as_of came from the caller: later articles are hidden
    window: Window | None = None

    @property
    def relative(self) -> bool:
        return self.window is not None


def to_date(value: AsOf | None, today: Callable[[], dt.date] = dt.date.today) -> dt.date:
    if value is None:
        return today()
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    text = value.strip()
    try:
        return dt.date.fromisoformat(text[:10]) if len(text) == 10 else dt.datetime.fromisoformat(text).date()
    except ValueError:
        raise ValueError(f"as_of must be an ISO date or datetime (YYYY-MM-DD[THH:MM[:SS][+HH:MM]]), got {value!r}") from None


def frame(question: str, as_of: AsOf | None = None, today: Callable[[], dt.date] = dt.date.today) -> TimeFrame:
    """The question's time frame: `as_of` (default today) and the window of its first relative expression."""
    day = to_date(as_of, today)
    try:
        window = resolve(question, day)
    except (OverflowError, ValueError):  # a window reaching past year 1 or 9999
        window = None
    return TimeFrame(day, as_of is not None, window)


def _clip(start: dt.date, end: dt.date, day: dt.date) -> Window:
    end = min(end, day)
    return (min(start, end), end)


def _month(year: int, month: int) -> Window:
    return dt.date(year, month, 1), dt.date(year, month, calendar.monthrange(year, month)[1])


def _last_month_named(month: int, day: dt.date) -> Window:
    year = day.year if month <= day.month else day.year - 1
    return _month(year, month)


def _monday(day: dt.date) -> dt.date:
    return day - dt.timedelta(days=day.weekday())


def _this(unit: str, day: dt.date) -> Window:
    if unit == "week":
        return day - dt.timedelta(days=6), day  # a rolling week: "this week" asked on a Monday means the last days
    if unit == "weekend":
        saturday = day - dt.timedelta(days=(day.weekday() - 5) % 7)
        return saturday, saturday + dt.timedelta(days=1)
    if unit == "month":
        return day.replace(day=1), day
    return day.replace(month=1, day=1), day


def _last(unit: str, day: dt.date) -> Window:
    if unit == "week":
        monday = _monday(day) - dt.timedelta(days=7)
        return monday, monday + dt.timedelta(days=6)
    if unit == "weekend":
        saturday = day - dt.timedelta(days=(day.weekday() - 5) % 7 or 7)
        return saturday, saturday + dt.timedelta(days=1)
    if unit == "month":
        first = day.replace(day=1) - dt.timedelta(days=1)
        return _month(first.year, first.month)
    return dt.date(day.year - 1, 1, 1), dt.date(day.year - 1, 12, 31)


def _count(word: str) -> int:
    return int(word) if word.isdigit() else _NUMBERS[word]


_MONTH_NAMES = "|".join(sorted(MONTHS, key=len, reverse=True))
_DAY_NAMES = "|".join(WEEKDAYS)
_NUMBER_WORDS = "|".join(_NUMBERS)
_UNITS = r"(day|week|weekend|month|year)s?"
_PATTERNS: list[tuple[re.Pattern[str], Callable[[re.Match[str], dt.date], Window | None]]] = [
    (re.compile(rf"\b({_MONTH_NAMES})\.? (\d{{1,2}})(?:st|nd|rd|th)?,? ((?:19|20)\d\d)\b"),
     lambda m, d: _exact(int(m[3]), MONTHS[m[1]], int(m[2]), d)),
    (re.compile(rf"\b({_MONTH_NAMES})\.?,? ((?:19|20)\d\d)\b"), lambda m, d: _clip(*_month(int(m[2]), MONTHS[m[1]]), d)),
    (re.compile(r"\btoday\b|\btonight\b|\bthis (morning|afternoon|evening)\b"), lambda m, d: (d, d)),
    (re.compile(r"\byesterday\b|\blast night\b"), lambda m, d: (d - dt.timedelta(days=1),) * 2),
    (re.compile(rf"\b(?:past|last|previous) (\d+|{_NUMBER_WORDS}) {_UNITS}\b"),
     lambda m, d: (d - dt.timedelta(days=_count(m[1]) * _UNIT_DAYS[m[2].replace("weekend", "week")]), d)),
    (re.compile(rf"\b(\d+|{_NUMBER_WORDS}) {_UNITS} ago\b"),
     lambda m, d: _around(d - dt.timedelta(days=_count(m[1]) * _UNIT_DAYS[m[2].replace("weekend", "week")]), m[2], d)),
    (re.compile(r"\b(?:this|earlier this|so far this|past|this past) (week|weekend|month|year)\b"), lambda m, d: _this(m[1], d)),
    (re.compile(r"\b(?:last|previous) (week|weekend|month|year)\b"), lambda m, d: _last(m[1], d)),
    (re.compile(rf"\b(?:on|last|this past|this) ({_DAY_NAMES})\b"), lambda m, d: _weekday(WEEKDAYS[m[1]], d)),
    (re.compile(rf"\b({_MONTH_NAMES})\.? (\d{{1,2}})(?:st|nd|rd|th)?\b(?!,? \d{{4}})"),
     lambda m, d: _day_in_month(MONTHS[m[1]], int(m[2]), d)),
    (re.compile(rf"\b(?:in|during|early|late|mid-?|since|this|last) ?({_MONTH_NAMES})\b(?! \d)"), lambda m, d: _clip(*_last_month_named(MONTHS[m[1]], d), d)),
    (re.compile(r"\b(?:in|during|since) ((?:19|20)\d\d)\b"), lambda m, d: _clip(dt.date(int(m[1]), 1, 1), dt.date(int(m[1]), 12, 31), d)),
    (re.compile(r"\b(recent|recently|lately|latest)\b"), lambda m, d: (d - dt.timedelta(days=RECENT_DAYS), d)),
]


def _around(day: dt.date, unit: str, today: dt.date) -> Window:
    half = {"day": 1, "week": 3, "weekend": 3, "month": 10, "year": 120}[unit.rstrip("s")]
    return _clip(day - dt.timedelta(days=half), day + dt.timedelta(days=half), today)


def _weekday(weekday: int, day: dt.date) -> Window:
    """The last such weekday on or before the day; news of it is published that day or the next."""
    back = (day.weekday() - weekday) % 7
    start = day - dt.timedelta(days=back)
    return _clip(start, start + dt.timedelta(days=1), day)


def _exact(year: int, month: int, number: int, day: dt.date) -> Window | None:
    try:
        start = dt.date(year, month, number)
    except ValueError:
        return None
    return (start, start + dt.timedelta(days=1)) if start <= day else None


def _day_in_month(month: int, number: int, day: dt.date) -> Window | None:
    """The last such day on or before the day (this year's, else last year's)."""
    year = day.year if (month, number) <= (day.month, day.day) else day.year - 1
    window = _exact(year, month, number, day)
    return _clip(*window, day) if window else None


def resolve(question: str, day: dt.date) -> Window | None:
    """The date window of the first relative time expression in the question (earliest in the text), or None."""
    text = question.lower()
    best: tuple[int, Window] | None = None
    for pattern, make in _PATTERNS:
        for m in pattern.finditer(text):
            if best is not None and m.start() >= best[0]:
                break
            window = make(m, day)
            if window is not None:
                best = (m.start(), window)
                break
    return best[1] if best else None


def prior(published: dt.date | None, tf: TimeFrame, half_life_days: float, newest: dt.date | None = None) -> float | None:
    """How well an article's date fits the question, in (0, 1]; None when the article is undated.

    Inside the window 1, halving every `half_life_days` outside it. Without a window, it halves every
    `half_life_days` of age before `newest` (the newest candidate's date, else as_of): the prior orders the
    candidates by recency even when the whole archive is older than as_of."""
    if published is None:
        return None
    if tf.window is not None:
        gap = days_outside(published, tf.window)
    else:
        gap = max(0, ((newest or tf.as_of) - published).days)
    return math.pow(0.5, gap / half_life_days) if half_life_days > 0 else float(gap == 0)


def days_outside(published: dt.date, window: Window) -> int:
    """Days between a date and the window, 0 inside it."""
    start, end = window
    return (start - published).days if published < start else max(0, (published - end).days)


def label(day: dt.date) -> str:
    return f"{day.day} {calendar.month_abbr[day.month]} {day.year}"


def dated(answer: str, published_at: str | None) -> str:
    """A time-relative question's answer, led by the date of the source it cites ("As of 3 Jan 2023: ..."), so a
    reader sees which week's news it is; unchanged when the source is undated. The date is read as the store reads
    it for the as_of filter and the prior."""
    day = published_day(published_at)
    return f"As of {label(day)}: {answer}" if day else answer


def published_day(published_at: str | None) -> dt.date | None:
    """A stored publication date as the store reads it for the as_of filter and the prior (date_key); None when
    undated or malformed."""
    return key_date(date_key(published_at))
