from datetime import UTC, datetime, timedelta

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.contracts import INVALID_POINTS, UNKNOWN_CUSTOMER, LoyaltyMaintenanceRequest, PointsRequest
from activities.loyalty import LoyaltyActivities
from domain.db import transaction, utcnow
from domain.loyalty import maintenance
from domain.loyalty import service as loyalty
from domain.loyalty.schemas import ProgramConfig
from tests.loyalty.helpers import PROGRAM, audit, emitted, entries, make_customer, set_program


async def test_account_view_history_and_adjustments(client, sessions, admin_headers, marketer_headers):
    await set_program(sessions)  # silver at 500, 12-month expiry
    customer = await make_customer(sessions)
    now = utcnow()
    async with transaction(sessions) as session:
        await loyalty.award(session, customer, "old", 300, "anniversary", now - timedelta(days=350))
        await loyalty.award(session, customer, "new", 100, "survey", now)
    response = await client.post(
        f"/api/loyalty/{customer}/adjust",
        json={"points": -50, "reason": "order 7 refunded"},
        headers=admin_headers,
    )
    assert response.status_code == 201
    assert response.json()["entry"]["kind"] == "adjust" and response.json()["balance"] == 350

    account = (await client.get(f"/api/loyalty/{customer}", headers=marketer_headers)).json()
    assert account["balance"] == 350 and account["tier"] == "member"
    assert (account["next_tier"], account["points_to_next_tier"]) == ("silver", 100)
    # The older lot (300, 50 of it spent by the adjustment) expires within 30 days; the newer does not.
    assert account["expiring_points"] == 250
    assert [lot["remaining"] for lot in account["expiring"]] == [250]
    later = await client.get(f"/api/loyalty/{customer}?expiring_within_days=400", headers=marketer_headers)
    assert later.json()["expiring_points"] == 350

    page = (await client.get(f"/api/loyalty/{customer}/history?limit=2", headers=marketer_headers)).json()
    assert [e["kind"] for e in page] == ["adjust", "earn"]
    rest = await client.get(
        f"/api/loyalty/{customer}/history?limit=2&before_id={page[-1]['id']}", headers=marketer_headers
    )
    assert [e["points"] for e in rest.json()] == [300]
    adjusted = await emitted(sessions, "Points Adjusted")
    assert [(e.properties["points"], e.properties["reason"]) for e in adjusted] == [(-50, "order 7 refunded")]
    assert (await client.get(f"/api/loyalty/{customer}/audit", headers=admin_headers)).json()["consistent"]


async def test_maintenance_run_twice_changes_nothing_the_first_did_not(sessions):
    await set_program(sessions)
    customers = [await make_customer(sessions, f"m{i}") for i in range(3)]
    earned_at = datetime(2030, 1, 10, tzinfo=UTC)
    for i, customer in enumerate(customers):
        async with transaction(sessions) as session:
            await loyalty.award(session, customer, "a", 600, "welcome", earned_at)  # silver
            await loyalty.award(
                session, customer, "b", 10 * (i + 1), "later", earned_at + timedelta(days=200)
            )
    acts, env = LoyaltyActivities(sessions), ActivityEnvironment()
    # 370 days on, the 600 have expired and left the tier window. Pages of 2 members at a time.
    req = LoyaltyMaintenanceRequest(as_of=(earned_at + timedelta(days=370)).isoformat(), page_size=2)
    passes = []
    for _ in range(2):
        passes.append(
            (
                (await env.run(acts.warn_expiring, req)).count,
                (await env.run(acts.expire_points, req)).count,
                (await env.run(acts.reevaluate_tiers, req)).count,
            )
        )
    assert passes == [(3, 3, 3), (0, 0, 0)]
    for i, customer in enumerate(customers):
        state = await audit(sessions, customer)
        assert state.consistent, state.problems
        assert (state.stored.balance, state.stored.tier) == (10 * (i + 1), "member")
    assert len(await emitted(sessions, "Points Expired")) == 3
    assert len(await emitted(sessions, "Points Expiring Soon")) == 3
    assert len(await emitted(sessions, "Tier Changed")) == 6  # up to silver, and back down


async def test_expiry_without_a_warning_pass_still_warns_first(sessions):
    await set_program(sessions)
    customer = await make_customer(sessions)
    earned_at = datetime(2030, 1, 10, tzinfo=UTC)
    async with transaction(sessions) as session:
        await loyalty.award(session, customer, "a", 70, "welcome", earned_at)
    async with transaction(sessions) as session:
        assert await maintenance.expire_due(session, earned_at + timedelta(days=400), 10) == 1
    stream = [e.name for e in await emitted(sessions) if e.name != "Points Earned"]
    assert stream == ["Points Expiring Soon", "Points Expired"]


async def test_editing_a_rule_keeps_its_start(sessions):
    await set_program(sessions)
    async with sessions() as session:
        first = await loyalty.program(session)
    edited = {**PROGRAM, "rules": [{**PROGRAM["rules"][0], "points_per_unit": 2}]}
    async with transaction(sessions) as session:
        await loyalty.put_program(session, ProgramConfig.model_validate(edited), utcnow() + timedelta(days=1))
        second = await loyalty.program(session)
    assert second.rules[0].since == first.rules[0].since
    assert second.rules[0].points_per_unit == 2


async def test_journey_activities_refuse_what_a_retry_cannot_fix(sessions):
    customer = await make_customer(sessions)
    acts = LoyaltyActivities(sessions)
    env = ActivityEnvironment()
    for req, kind in [
        (PointsRequest("k1", customer, 0, "zero"), INVALID_POINTS),
        (PointsRequest("k2", customer, -5, "negative"), INVALID_POINTS),
        (PointsRequest("k3", 999_999, 5, "nobody"), UNKNOWN_CUSTOMER),
    ]:
        with pytest.raises(ApplicationError) as raised:
            await env.run(acts.award_points, req)
        assert raised.value.type == kind and raised.value.non_retryable
    assert await entries(sessions) == []
    result = await env.run(acts.expire_points, LoyaltyMaintenanceRequest(as_of=utcnow().isoformat()))
    assert result.count == 0


async def test_a_journey_step_needs_only_key_customer_and_points(sessions):
    """What the journey engine sends: no reason, no time; the step is named in the ledger instead."""
    customer = await make_customer(sessions)
    acts, env = LoyaltyActivities(sessions), ActivityEnvironment()
    step = PointsRequest("journey/j1/customer/1/bonus/1", customer, 25, journey_id="j1", node_id="bonus")
    first = await env.run(acts.award_points, step)
    again = await env.run(acts.award_points, step)
    assert (first.status, first.balance, first.tier, first.replayed) == ("applied", 25, "member", False)
    assert (again.entry_id, again.balance, again.replayed) == (first.entry_id, 25, True)
    spend = PointsRequest("journey/j1/customer/1/perk/1", customer, 40, journey_id="j1", node_id="perk")
    refused = await env.run(acts.deduct_points, spend)
    assert (refused.status, refused.balance, refused.entry_id) == ("insufficient", 25, None)
    assert [(e.kind, e.points, e.reason) for e in await entries(sessions, customer)] == [
        ("earn", 25, "journey j1, step bonus")
    ]
