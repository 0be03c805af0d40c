"""Birthday rules ("anniversary today / this month") on birthdays stored with or without the year.

Many shops keep only the month and day (``05-17``) for privacy; journeys' anniversary trigger reads
that form, and so must segments, in both evaluators: the SQL one (previews, stored membership) and the
in-Python one (journeys' live checks).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from domain import dates
from domain.customers.models import Customer
from domain.db import transaction
from domain.events import service as events
from domain.events.schemas import IdentifyCall
from domain.segments import rules as r
from domain.segments import service as segments
from domain.segments.schemas import PreviewIn

TODAY = {"trait": "birthday", "op": "anniversary_today"}
THIS_MONTH = {"trait": "birthday", "op": "anniversary_this_month"}


async def _people(sessions, **birthdays: str | tuple[str, str]) -> None:
    """One customer per user id, with a birthday and optionally a time zone: ``user=(day, zone)``."""
    calls = []
    for user, given in birthdays.items():
        day, zone = given if isinstance(given, tuple) else (given, None)
        traits = {"birthday": day, **({"timezone": zone} if zone else {})}
        calls.append(IdentifyCall(userId=user, traits=traits))
    async with transaction(sessions) as session:
        await events.ingest(session, calls, source_key_id=None)


async def _selected(sessions, rule: dict, now: datetime) -> set[str]:
    """Who ``rule`` selects at ``now``; both evaluators must say the same."""
    async with sessions() as session:
        ids = dict((await session.execute(select(Customer.user_id, Customer.id))).all())
        preview = await segments.preview(session, PreviewIn(rule=rule, sample_size=200), now=now)
        live = {u for u, c in ids.items() if await segments.matches_rule(session, r.parse(rule), c, now=now)}
    in_sql = {brief.user_id for brief in preview.sample}
    assert in_sql == live, f"SQL selects {in_sql}, the live check {live}"
    return in_sql


async def test_a_birthday_without_its_year_is_today_and_this_month_where_the_customer_lives(sessions):
    now = datetime(2026, 5, 31, 11, tzinfo=UTC)  # already 1 June in Kiribati (UTC+14), 31 May in Berlin
    await _people(
        sessions,
        kiri=("06-01", "Pacific/Kiritimati"),
        berlin=("06-01", "Europe/Berlin"),
        may=("05-17", "Europe/Berlin"),
        utc="05-31",
        dated=("1990-05-31", "Europe/Berlin"),
        european="31-05",  # day first: no month 31
        padded="05-31\n",  # only a whole value of MM-DD is a month and day
    )
    assert await _selected(sessions, TODAY, now) == {"kiri", "utc", "dated"}
    assert await _selected(sessions, THIS_MONTH, now) == {"kiri", "may", "utc", "dated"}


@pytest.mark.parametrize(
    "now, celebrating",
    [
        (datetime(2027, 2, 28, 12, tzinfo=UTC), {"bare", "dated"}),  # no 29th in 2027: on the 28th
        (datetime(2028, 2, 28, 12, tzinfo=UTC), set()),
        (datetime(2028, 2, 29, 12, tzinfo=UTC), {"bare", "dated"}),
        (datetime(2027, 3, 1, 12, tzinfo=UTC), set()),
    ],
)
async def test_a_29_february_birthday_without_its_year_is_celebrated_on_the_28th_in_common_years(
    sessions, now, celebrating
):
    await _people(sessions, bare="02-29", dated="2000-02-29")
    assert await _selected(sessions, TODAY, now) == celebrating


@pytest.mark.parametrize(
    "test",
    [
        {"op": "before", "value": "2027-01-01"},
        {"op": "after", "value": "0001-01-01"},
        {"op": "within_next_days", "value": 0},
        {"op": "within_last_days", "value": 400},
    ],
)
async def test_date_comparisons_and_day_windows_leave_out_a_birthday_without_its_year(sessions, test):
    """They compare whole dates: a month and day alone is on no side of one and in no span of days."""
    now = datetime(2026, 5, 31, 11, tzinfo=UTC)
    await _people(sessions, bare="05-31", dated="2026-05-31")
    assert await _selected(sessions, {"trait": "birthday", **test}, now) == {"dated"}


async def test_an_impossible_date_is_no_birthday_and_no_date_in_either_evaluator(sessions):
    """1990-05-99 has the shape of a date in May but is no day: no birthday this month, on no side of
    a date and in no window; nor is 29 February of a common year, 05-32 or the year 0000."""
    now = datetime(2026, 5, 31, 11, tzinfo=UTC)
    await _people(
        sessions,
        real="1990-05-31",
        timestamp="1990-05-31T08:00:00Z",
        leap="2000-02-29",
        bare_leap="02-29",
        day99="1990-05-99",
        day00="1990-05-00",
        april31="1990-04-31",
        common29="1990-02-29",
        century29="1900-02-29T10:00:00+02:00",
        month13="1990-13-01",
        year0="0000-05-31",
        bare32="05-32",
        bare_month13="13-01",
        bare30feb="02-30",
        april31_recent="2026-04-31",  # within the last 40 days, were it a day
    )
    assert await _selected(sessions, TODAY, now) == {"real", "timestamp"}
    assert await _selected(sessions, THIS_MONTH, now) == {"real", "timestamp"}
    before = {"trait": "birthday", "op": "before", "value": "2027-01-01"}
    assert await _selected(sessions, before, now) == {"real", "timestamp", "leap"}
    after = {"trait": "birthday", "op": "after", "value": "0001-01-01"}
    assert await _selected(sessions, after, now) == {"real", "timestamp", "leap"}
    window = {"trait": "birthday", "op": "within_last_days", "value": 40}
    assert await _selected(sessions, window, now) == set()
    await _people(sessions, recent="2026-05-01")
    assert await _selected(sessions, window, now) == {"recent"}


async def test_29_february_of_a_leap_year_is_celebrated_and_of_a_common_year_is_no_date(sessions):
    now = datetime(2027, 2, 28, 12, tzinfo=UTC)  # no 29th in 2027: leap-day birthdays on the 28th
    await _people(sessions, leap="2000-02-29", century="1900-02-29", common="1990-02-29")
    assert await _selected(sessions, TODAY, now) == {"leap"}


def _grid() -> dict[str, str]:
    """Values at the edges of the calendar: each month's last days, leap and common years, centuries."""
    values = []
    for year in ("0000", "0001", "1900", "1996", "2000", "2023", "2100"):
        for month in ("00", "01", "02", "04", "12", "13"):
            values += [f"{year}-{month}-{day}" for day in ("00", "01", "28", "29", "30", "31", "32")]
    values += [f"{month}-{day}" for month in ("00", "02", "04", "13") for day in ("00", "29", "30", "31")]
    return {f"u{n}": value for n, value in enumerate(values)}


async def test_both_evaluators_read_every_edge_of_the_calendar_as_domain_dates_does(sessions):
    grid = _grid()
    await _people(sessions, **grid)
    now = datetime(2027, 2, 28, 12, tzinfo=UTC)  # a common year: 29 February birthdays are today

    dated = {user for user, value in grid.items() if dates.leading_date(value)}
    before = {"trait": "birthday", "op": "before", "value": "9999-12-31"}
    assert await _selected(sessions, before, now) == dated
    recurs = {user: dates.month_day(value) for user, value in grid.items()}
    february = {user for user, day in recurs.items() if day and day.startswith("02-")}
    assert await _selected(sessions, THIS_MONTH, now) == february
    today = {user for user, day in recurs.items() if day in ("02-28", "02-29")}
    assert await _selected(sessions, TODAY, now) == today
    assert {grid[u] for u in today} >= {"02-29", "1996-02-29", "2000-02-29", "2023-02-28", "1900-02-28"}
