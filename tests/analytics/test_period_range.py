"""A period's bounds must be times the product can work with (1900-01-01 to 2200-01-01, as for every time
a request names): near year 1 or 9999 the arithmetic on them overflowed and answered 500."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from domain.analytics import periods

NOW = datetime(2026, 5, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/api/analytics/kpis", {"from": "0001-01-01"}, "from"),
        ("/api/analytics/kpis", {"to": "0001-01-01"}, "to"),
        ("/api/analytics/kpis", {"from": "0001-01-01T00:00:00+14:00"}, "from"),
        ("/api/analytics/kpis", {"from": "1899-12-31T23:59:59Z", "to": "1900-01-02"}, "from"),
        ("/api/analytics/kpis/trend", {"to": "9999-12-31"}, "to"),
        ("/api/analytics/kpis/trend", {"to": "9999-12-31T23:59:59-14:00"}, "to"),
        ("/api/analytics/report", {"to": "9999-12-31"}, "to"),
        ("/api/analytics/templates", {"to": "0001-01-01"}, "to"),
        ("/api/analytics/templates", {"from": "2200-01-01T00:00:01Z"}, "from"),
        ("/api/analytics/journeys/any", {"from": "0001-01-01T00:00:00+14:00"}, "from"),
        ("/api/analytics/journeys/any", {"to": "9999-12-31"}, "to"),
        ("/api/analytics/journeys/any", {"from": "0001-01-01"}, "from"),
    ],
)
async def test_bounds_outside_what_can_be_stored_are_422_naming_the_parameter(
    client, marketer_headers, path, params, field
):
    got = await client.get(path, params=params, headers=marketer_headers)
    assert got.status_code == 422, got.text
    body = got.json()
    assert body["error"] == "invalid_period"
    assert body["detail"]["field"] == field
    assert "1900-01-01" in body["detail"]["problem"] and "2200-01-01" in body["detail"]["problem"]


def test_the_edges_of_the_range_are_periods():
    whole = periods.period("1900-01-01", "2200-01-01", now=NOW)
    assert (whole.start.year, whole.end.year) == (1900, 2200)
    assert periods.period(None, "1900-01-02", now=NOW).start.year == 1899  # the default 30 days before
    assert periods.optional_period("1900-01-01", None, now=NOW).start.year == 1900
    assert periods.optional_period(None, "2200-01-01", now=NOW).end.year == 2200
    # A date-time with an offset is checked in UTC: 2199-12-31T23:00-01:00 is 2200-01-01T00:00Z.
    assert periods.parse_instant("2199-12-31T23:00-01:00", "to") == datetime(2200, 1, 1, tzinfo=UTC)
    for outside in ("2199-12-31T23:00:01-01:00", "1900-01-01T00:00:00+00:01", "0001-01-01", "9999-12-31"):
        with pytest.raises(periods.InvalidInput):
            periods.parse_instant(outside, "to")
    with pytest.raises(periods.InvalidInput):  # from 2200-01-01 is not before any to
        periods.period("2200-01-01", None, now=NOW)


@pytest.mark.parametrize("params", [{"to": "1950-01-01"}, {"from": "2150-01-01"}, {"to": "1900-01-02"}])
async def test_a_journey_period_with_one_bound_is_open_on_the_other_side(client, marketer_headers, params):
    # The open side was 1970-01-01 or 100 years after now: a `to` before 1970 or a `from` after that
    # was refused as "from (1970-01-01...) must be before to", naming a bound nobody sent.
    got = await client.get("/api/analytics/journeys/any", params=params, headers=marketer_headers)
    assert got.status_code == 404, got.text  # the period is fine; the journey does not exist
    assert periods.optional_period(None, "1950-01-01", now=NOW).start.year == 1900
    assert periods.optional_period("2150-01-01", None, now=NOW).end.year == 2200
