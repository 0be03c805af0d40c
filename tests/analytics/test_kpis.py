"""Every KPI equals the value computed independently from the generated rows, on both databases."""

from __future__ import annotations

import pytest

from domain.analytics import kpis
from domain.analytics.periods import Period
from tests.analytics import dataset, expected

pytestmark = pytest.mark.timeout(600)


def iso(moment) -> str:
    return moment.isoformat()


@pytest.fixture
async def world(sessions):
    built = dataset.build(seed=7)
    await dataset.store(sessions, built)
    return built


async def test_every_kpi_matches_the_independent_computation(client, marketer_headers, world):
    answer = expected.kpis(world, world.start, world.end)
    got = await client.get(
        "/api/analytics/kpis",
        params={"from": iso(world.start), "to": iso(world.end)},
        headers=marketer_headers,
    )
    assert got.status_code == 200, got.text
    k = got.json()
    assert (k["from"], k["to"]) == (
        world.start.isoformat().replace("+00:00", "Z"),
        world.end.isoformat().replace("+00:00", "Z"),
    )
    assert k["customer_satisfaction"]["value"] == pytest.approx(answer["customer_satisfaction"])
    assert k["customer_satisfaction"]["ratings"] == answer["ratings"]
    assert k["retention_rate"] == {
        "value": pytest.approx(answer["retention_rate"]),
        "active_at_start": answer["active_at_start"],
        "retained": answer["retained"],
    }
    assert k["customer_growth_rate"] == {
        "value": pytest.approx(answer["customer_growth_rate"]),
        "customers_at_start": answer["customers_at_start"],
        "new_customers": answer["new_customers"],
    }
    assert k["marketing_conversion_rate"] == {
        "value": pytest.approx(answer["marketing_conversion_rate"]),
        "recipients": answer["recipients"],
        "converted": answer["converted"],
    }
    assert k["complaint_count"] == {
        "value": answer["complaint_count"],
        "cases_opened": answer["cases_opened"],
    }
    assert k["roi"]["value"] == pytest.approx(answer["roi"])
    assert k["roi"]["attributed_revenue"] == pytest.approx(answer["attributed_revenue"])
    assert k["roi"]["attributed_purchases"] == answer["attributed_purchases"]
    assert k["roi"]["messages_sent"] == answer["messages_sent"]
    index = k["crm_effectiveness_index"]
    assert index["value"] == pytest.approx(answer["crm_effectiveness_index"])
    assert {c["kpi"]: c["normalised"] for c in index["components"]} == pytest.approx(answer["normalised"])
    # The data set is not degenerate: every KPI has something to count.
    assert answer["ratings"] and answer["active_at_start"] and answer["recipients"] and answer["converted"]
    assert answer["complaint_count"] and answer["attributed_purchases"] and answer["new_customers"]


async def test_index_weights_and_windows_come_from_the_settings(app, client, marketer_headers, world):
    app.state.settings = app.state.settings.model_copy(
        update={
            "analytics_index_weights": {"retention": 3, "satisfaction": 1},
            "analytics_active_days": 30,
            "analytics_conversion_window_days": 30,
            "analytics_attribution_window_days": 2,
            "analytics_cost_per_message": 0.5,
            "analytics_complaint_terms": ["invoice"],
        }
    )
    answer = expected.kpis(
        world,
        world.start,
        world.end,
        active_days=30,
        conversion_days=30,
        attribution_days=2,
        cost_per_message=0.5,
        terms=("invoice",),
    )
    k = (
        await client.get(
            "/api/analytics/kpis",
            params={"from": iso(world.start), "to": iso(world.end)},
            headers=marketer_headers,
        )
    ).json()
    n = answer["normalised"]
    assert k["crm_effectiveness_index"]["value"] == pytest.approx(
        (3 * n["retention"] + n["satisfaction"]) / 4
    )
    assert k["retention_rate"]["active_at_start"] == answer["active_at_start"]
    assert k["retention_rate"]["value"] == pytest.approx(answer["retention_rate"])
    assert k["marketing_conversion_rate"]["converted"] == answer["converted"]
    assert k["roi"]["value"] == pytest.approx(answer["roi"])
    assert k["complaint_count"]["value"] == answer["complaint_count"]


async def test_complaint_terms_match_whatever_the_case_in_any_script(
    app, client, marketer_headers, sessions, world
):
    # SQLite's lower() folds ASCII only: 'RÉCLAMATION' did not contain 'réclamation' there (PostgreSQL's
    # did), so the two databases counted different complaints.
    from sqlalchemy import update

    from domain.cases.models import Case
    from domain.db import transaction

    opened = [c for c in world.cases if world.start <= c["created_at"] < world.end]
    for c, reason in zip(opened[:3], ("RÉCLAMATION client", "Réclamation", "ÉTÉ"), strict=True):
        c["reason"] = reason
        async with transaction(sessions) as session:
            await session.execute(update(Case).where(Case.id == c["id"]).values(reason=reason))
    terms = ["réclamation"]
    app.state.settings = app.state.settings.model_copy(update={"analytics_complaint_terms": terms})
    answer = expected.kpis(world, world.start, world.end, terms=terms)
    got = await client.get(
        "/api/analytics/kpis",
        params={"from": iso(world.start), "to": iso(world.end)},
        headers=marketer_headers,
    )
    assert answer["complaint_count"] == 2
    assert got.json()["complaint_count"] == {"value": 2, "cases_opened": answer["cases_opened"]}


async def test_a_trend_and_its_whole_period_agree_with_the_independent_computation(sessions, settings):
    """The report's KPIs of the whole period come from the same per-week query as its trend."""
    world = dataset.build(seed=9)
    await dataset.store(sessions, world)
    async with sessions() as session:
        total, trend = await kpis.overview(session, Period(world.start, world.end), "week", settings)
    answer = expected.kpis(world, world.start, world.end)
    assert len(trend.points) > 2
    assert total.retention_rate.model_dump() == {
        "value": pytest.approx(answer["retention_rate"]),
        "active_at_start": answer["active_at_start"],
        "retained": answer["retained"],
    }
    assert total.roi.attributed_purchases == answer["attributed_purchases"]
    assert total.customer_growth_rate.new_customers == answer["new_customers"]
    for point in trend.points:
        assert point.retention_rate == pytest.approx(
            expected.kpis(world, point.start, point.end)["retention_rate"]
        )
