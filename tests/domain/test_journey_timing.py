"""Time arithmetic in the customer's timezone: DST, quiet hours across midnight, the frequency cap."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from domain.journeys import timing

PARIS = ZoneInfo("Europe/Paris")
UTC_Z = ZoneInfo("UTC")


def test_next_local_time_is_today_or_tomorrow_in_the_customer_zone():
    now = datetime(2026, 6, 1, 6, 0, tzinfo=UTC)  # 08:00 in Paris (UTC+2)
    assert timing.next_local_time(now, PARIS, "09:00") == datetime(2026, 6, 1, 7, 0, tzinfo=UTC)
    assert timing.next_local_time(now, PARIS, "07:30") == datetime(2026, 6, 2, 5, 30, tzinfo=UTC)


def test_next_local_time_on_given_weekdays():
    monday = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    assert timing.next_local_time(monday, UTC_Z, "10:00", ["fri"]) == datetime(2026, 6, 5, 10, 0, tzinfo=UTC)


def test_local_time_across_the_spring_dst_jump():
    # 29 March 2026: Paris moves from UTC+1 to UTC+2; 09:00 local is 07:00 UTC that day.
    before = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)
    assert timing.next_local_time(before, PARIS, "09:00") == datetime(2026, 3, 29, 7, 0, tzinfo=UTC)


def test_quiet_hours_wrapping_midnight_end_next_morning():
    late = datetime(2026, 6, 1, 21, 30, tzinfo=UTC)  # 23:30 Paris
    assert timing.quiet_hours_end(late, PARIS, "21:00", "08:00") == datetime(2026, 6, 2, 6, 0, tzinfo=UTC)
    early = datetime(2026, 6, 1, 4, 0, tzinfo=UTC)  # 06:00 Paris
    assert timing.quiet_hours_end(early, PARIS, "21:00", "08:00") == datetime(2026, 6, 1, 6, 0, tzinfo=UTC)
    noon = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)
    assert timing.quiet_hours_end(noon, PARIS, "21:00", "08:00") == noon


NEW_YORK = ZoneInfo("America/New_York")


def test_quiet_hours_hold_a_send_through_the_hour_repeated_when_the_clocks_go_back():
    """1 November 2026, New York: 02:00 EDT becomes 01:00 EST. Quiet 21:00-01:30 holds a send at either
    01:10 until the 01:30 that follows it, the second 01:10 too (it went at once: 01:30 EDT had passed)."""
    first = datetime(2026, 11, 1, 5, 10, tzinfo=UTC)
    second = datetime(2026, 11, 1, 6, 10, tzinfo=UTC)
    assert [t.astimezone(NEW_YORK).strftime("%H:%M %Z") for t in (first, second)] == [
        "01:10 EDT",
        "01:10 EST",
    ]

    for now, until in (
        (first, datetime(2026, 11, 1, 5, 30, tzinfo=UTC)),
        (second, datetime(2026, 11, 1, 6, 30, tzinfo=UTC)),
    ):
        moment, held_by = timing.next_send_moment(
            now, NEW_YORK, quiet=("21:00", "01:30"), cap=None, recent_sends=[]
        )
        assert (moment, held_by) == (until, "quiet_hours"), moment.astimezone(NEW_YORK)
        assert moment.astimezone(NEW_YORK).strftime("%H:%M") == "01:30"
    # Between the two 01:30s the clock reads 01:30-01:59 EDT: outside quiet hours, the send goes.
    between = datetime(2026, 11, 1, 5, 40, tzinfo=UTC)
    assert timing.quiet_hours_end(between, NEW_YORK, "21:00", "01:30") == between


def test_quiet_hours_that_end_in_the_hour_skipped_going_forward_end_at_the_jump():
    """8 March 2026, New York: 02:00 EST becomes 03:00 EDT, so 02:30 never shows. Quiet hours ending at
    02:30 are over when the clock jumps past it, at 03:00 EDT (they held the send until 03:30)."""
    night = datetime(2026, 3, 8, 6, 50, tzinfo=UTC)  # 01:50 EST
    jump = datetime(2026, 3, 8, 7, 0, tzinfo=UTC)
    assert jump.astimezone(NEW_YORK).strftime("%H:%M %Z") == "03:00 EDT"

    assert timing.quiet_hours_end(night, NEW_YORK, "21:00", "02:30") == jump
    assert timing.quiet_hours_end(datetime(2026, 3, 8, 2, 0, tzinfo=UTC), NEW_YORK, "21:00", "02:30") == jump
    # Lord Howe Island moves by half an hour (02:00 -> 02:30): quiet hours to 02:15 end at 02:30.
    lord_howe = ZoneInfo("Australia/Lord_Howe")
    assert timing.quiet_hours_end(
        datetime(2026, 10, 3, 14, 0, tzinfo=UTC), lord_howe, "21:00", "02:15"
    ) == datetime(2026, 10, 3, 15, 30, tzinfo=UTC)


def test_frequency_cap_releases_when_the_oldest_send_leaves_the_window():
    now = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    sends = [now - timedelta(hours=20), now - timedelta(hours=2), now - timedelta(hours=30)]
    assert timing.cap_release(now, sends, 3, 86_400) == now  # only two inside the day
    assert timing.cap_release(now, sends, 2, 86_400) == now + timedelta(hours=4)


def test_cap_and_quiet_hours_together_settle_on_the_first_moment_both_allow():
    now = datetime(2026, 6, 1, 18, 0, tzinfo=UTC)  # 20:00 Paris
    sends = [now - timedelta(hours=23)]  # frees at 19:00 UTC = 21:00 Paris, inside quiet hours
    moment, held_by = timing.next_send_moment(
        now, PARIS, quiet=("21:00", "08:00"), cap=(1, 86_400), recent_sends=sends
    )
    assert moment == datetime(2026, 6, 2, 6, 0, tzinfo=UTC)
    assert held_by == "frequency_cap"


def test_anniversary_on_29_february_falls_on_the_28th_in_common_years():
    now = datetime(2027, 1, 1, tzinfo=UTC)
    assert timing.next_anniversary(now, UTC_Z, date(2000, 2, 29), "09:00") == datetime(
        2027, 2, 28, 9, 0, tzinfo=UTC
    )


def test_date_traits_in_the_formats_sources_send():
    assert timing.parse_date("1990-05-17") == date(1990, 5, 17)
    assert timing.parse_date("1990-05-17T00:00:00Z") == date(1990, 5, 17)
    assert timing.parse_date("05-17") == date(2000, 5, 17)
    assert timing.parse_date("yesterday") is None
    assert timing.parse_date(19900517) is None


def test_date_traits_are_read_as_segments_read_them():
    # Forms Python's ISO parser takes but segments do not (no date there): no date here either.
    for lax in ("19900517", "1990-W20-4", " 1990-05-17", "\t1990-05-17", "+5-17", "5-17", "05-17\n"):
        assert timing.parse_date(lax) is None, lax
    # An impossible day is no date; 29 February only in a leap year, or without the year.
    for impossible in (
        "1990-05-99",
        "1990-02-29",
        "1900-02-29",
        "0000-05-17",
        "1990-13-01",
        "02-30",
        "13-01",
    ):
        assert timing.parse_date(impossible) is None, impossible
    assert timing.parse_date("2000-02-29") == date(2000, 2, 29)
    assert timing.parse_date("02-29") == date(2000, 2, 29)
    assert timing.parse_date("1990-05-17 08:00") == date(1990, 5, 17)  # a leading date, as segments


def test_a_wait_until_a_date_without_its_year_ends_on_its_next_occurrence():
    now = datetime(2026, 5, 20, 12, tzinfo=UTC)
    ahead = timing.plan("date", now, PARIS, traits={"d": "06-01"}, recent_sends=[], at="09:00", trait="d")
    assert ahead == (datetime(2026, 6, 1, 7, 0, tzinfo=UTC), None)  # 09:00 in Paris (UTC+2)
    # Already passed this year (17 May): next year's, with the offset (a day before).
    moment = timing.date_trait_moment(now, PARIS, "05-17", "09:00", offset_days=-1)
    assert moment == datetime(2027, 5, 16, 7, 0, tzinfo=UTC)
    # Later today still counts; 29 February in a common year is on the 28th, as birthdays are.
    assert timing.date_trait_moment(now, UTC_Z, "05-20", "13:00") == datetime(2026, 5, 20, 13, tzinfo=UTC)
    assert timing.date_trait_moment(now, UTC_Z, "02-29", "09:00") == datetime(2027, 2, 28, 9, tzinfo=UTC)
    # With its year a passed date stays passed (the wait goes on as date_passed).
    assert timing.date_trait_moment(now, UTC_Z, "2026-05-17", "09:00") == datetime(2026, 5, 17, 9, tzinfo=UTC)
    assert timing.date_trait_moment(now, UTC_Z, "05-99", "09:00") is None
