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
