"""Parameters are validated (a 422 naming the parameter), keys and roles are enforced, and the trend
is the KPIs of each calendar bucket."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from domain.auth.schemas import Role
from tests.analytics import dataset, expected
from tests.conftest import make_key

pytestmark = pytest.mark.timeout(600)
ENDPOINTS = [
    "/api/analytics/kpis",
    "/api/analytics/kpis/trend",
    "/api/analytics/templates",
    "/api/analytics/data-quality",
    "/api/analytics/data-quality.csv",
    "/api/analytics/report",
]


@pytest.mark.parametrize(
    ("params", "field", "words"),
    [
        ({"from": "2026-05-10", "to": "2026-05-01"}, "from", "must be before"),
        ({"from": "2026-05-01", "to": "2026-05-01"}, "from", "must be before"),
        ({"from": "last tuesday"}, "from", "not an ISO 8601"),
        ({"to": "2026-13-01"}, "to", "not an ISO 8601"),
        ({"from": "2026-01-01", "to": "2026-02-01", "interval": "fortnight"}, "interval", "not one of"),
        ({"from": "2020-01-01", "to": "2026-01-01", "interval": "day"}, "interval", "more than 60"),
    ],
)
async def test_bad_periods_are_422_naming_the_parameter(client, marketer_headers, params, field, words):
    got = await client.get("/api/analytics/kpis/trend", params=params, headers=marketer_headers)
    assert got.status_code == 422, got.text
    body = got.json()
    assert body["error"] == "invalid_period"
    assert body["detail"]["field"] == field and words in body["detail"]["problem"]


async def test_kpis_and_journeys_refuse_a_reversed_period(client, marketer_headers):
    for path in ("/api/analytics/kpis", "/api/analytics/templates", "/api/analytics/journeys/any"):
        got = await client.get(
            path, params={"from": "2026-02-01", "to": "2026-01-01"}, headers=marketer_headers
        )
        assert got.status_code == 422 and got.json()["detail"]["field"] == "from", path
    got = await client.get("/api/analytics/journeys/x", params={"window_days": 0}, headers=marketer_headers)
    assert got.status_code == 422 and got.json()["detail"][0]["field"] == "query.window_days"
    got = await client.get("/api/analytics/data-quality", params={"limit": -1}, headers=marketer_headers)
    assert got.status_code == 422 and got.json()["detail"][0]["field"] == "query.limit"
    assert (await client.get("/api/analytics/journeys/nope", headers=marketer_headers)).status_code == 404


async def test_marketers_and_admins_read_analytics_agents_and_strangers_do_not(
    client, sessions, admin_headers
):
    agent = {"Authorization": f"Bearer {await make_key(sessions, role=Role.agent)}"}
    marketer = {"Authorization": f"Bearer {await make_key(sessions, role=Role.marketer)}"}
    write = {"Authorization": f"Bearer {await make_key(sessions, write=True)}"}
    for path in ENDPOINTS:
        assert (await client.get(path)).status_code == 401, path
        assert (await client.get(path, headers=agent)).status_code == 403, path
        assert (await client.get(path, headers=write)).status_code == 403, path
        assert (await client.get(path, headers=marketer)).status_code == 200, path
        assert (await client.get(path, headers=admin_headers)).status_code == 200, path


async def test_the_report_asks_a_browser_for_the_key(client, sessions):
    asked = await client.get("/api/analytics/report")
    assert asked.status_code == 401
    assert asked.headers["www-authenticate"].startswith("Basic")
    key = await make_key(sessions, role=Role.marketer)
    assert (await client.get("/api/analytics/report", auth=(key, ""))).status_code == 200
    wrong = await client.get("/api/analytics/report", auth=("jk_wrong", ""))
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"].startswith("Basic")
    # JSON clients keep the plain 401 (no browser prompt).
    assert "www-authenticate" not in (await client.get("/api/analytics/kpis")).headers


async def test_trend_points_are_the_kpis_of_each_bucket(client, marketer_headers, sessions):
    world = dataset.build(seed=9)
    await dataset.store(sessions, world)
    start, end = world.start, world.start + timedelta(days=21)  # a Saturday: a cut first week
    got = await client.get(
        "/api/analytics/kpis/trend",
        params={"from": start.isoformat(), "to": end.isoformat(), "interval": "week"},
        headers=marketer_headers,
    )
    assert got.status_code == 200, got.text
    points = got.json()["points"]
    assert [p["from"][:10] for p in points] == ["2026-05-02", "2026-05-04", "2026-05-11", "2026-05-18"]
    assert points[-1]["to"][:10] == "2026-05-23"
    for p in points:
        lo, hi = (datetime.fromisoformat(p[k].replace("Z", "+00:00")) for k in ("from", "to"))
        want = expected.kpis(world, lo, hi)
        assert p["customer_satisfaction"] == pytest.approx(want["customer_satisfaction"])
        assert p["retention_rate"] == pytest.approx(want["retention_rate"])
        assert p["customer_growth_rate"] == pytest.approx(want["customer_growth_rate"])
        assert p["marketing_conversion_rate"] == pytest.approx(want["marketing_conversion_rate"])
        assert p["complaint_count"] == want["complaint_count"]
        assert p["roi"] == pytest.approx(want["roi"])
        assert p["crm_effectiveness_index"] == pytest.approx(want["crm_effectiveness_index"])


async def test_zero_denominators_are_null(client, marketer_headers):
    k = (await client.get("/api/analytics/kpis", headers=marketer_headers)).json()
    assert k["customer_satisfaction"] == {"value": None, "ratings": 0}
    assert k["retention_rate"]["value"] is None and k["customer_growth_rate"]["value"] is None
    assert k["marketing_conversion_rate"]["value"] is None and k["roi"]["value"] is None
    assert k["complaint_count"] == {"value": 0, "cases_opened": 0}
    assert k["crm_effectiveness_index"]["value"] is None


async def test_offsets_are_converted_to_utc_and_an_unencoded_plus_is_understood(client, marketer_headers):
    for value in (
        "2026-05-01T02:00:00+02:00",
        "2026-05-01T02:00:00 02:00",
        "2026-05-01T00:00:00Z",
        "2026-05-01",
    ):
        got = await client.get(
            "/api/analytics/kpis", params={"from": value, "to": "2026-05-02"}, headers=marketer_headers
        )
        assert got.status_code == 200, got.text
        assert got.json()["from"] == "2026-05-01T00:00:00Z", value


async def test_a_report_the_page_cannot_show_is_a_page_naming_the_problem(client, sessions):
    """The report's own form can ask for what it cannot show (a trend per day over its default 84 days):
    a browser was shown the API's JSON. It gets a page naming the field; a JSON client the JSON still."""
    key = await make_key(sessions, role=Role.marketer)
    browser = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
    for params, status, named in [
        ({"interval": "day"}, 422, "interval"),
        ({"from": "2026-03-01", "to": "2026-02-01"}, 422, "from"),
        ({"from": "%ff"}, 422, "from"),
        ({"journey_id": "gone"}, 404, "no journey"),
        ({"journey_id": "x" * 65}, 404, "no journey"),  # longer than any id: none has it
    ]:
        page = await client.get("/api/analytics/report", params=params, headers=browser, auth=(key, ""))
        assert page.status_code == status, page.text
        assert page.headers["content-type"].startswith("text/html"), page.text
        assert named in page.text and "Show the default report" in page.text
        plain = await client.get("/api/analytics/report", params=params, auth=(key, ""))
        assert plain.status_code == status and plain.json()["detail"], plain.text
