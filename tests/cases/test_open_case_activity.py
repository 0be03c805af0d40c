"""The open_case activity a journey's escalate node calls: idempotent, and refusing what cannot work."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.cases import CaseActivities
from activities.contracts import CASE_REJECTED, OpenCaseRequest
from domain.cases.models import Case, CaseOutbox
from domain.events.models import Event
from tests.cases.helpers import make_customer, make_team


async def test_a_retried_open_case_returns_the_same_case_and_emits_once(sessions):
    await make_team(sessions, "care")
    customer = await make_customer(sessions, "u1", value_tier="ordinary")
    activities = CaseActivities(sessions)
    req = OpenCaseRequest(
        idempotency_key="journey/j1/customer/1/escalate/1",
        customer_id=customer,
        reason="payment failed twice",
        team="care",
        journey_id="j1",
        node_id="escalate",
        waiting_workflow_id="journey/j1/customer/1",
    )
    env = ActivityEnvironment()
    first = await env.run(activities.open_case, req)
    again = await env.run(activities.open_case, req)
    assert first == again
    async with sessions() as session:
        case = await session.get(Case, first)
        assert (case.priority, case.journey_id, case.node_id) == ("normal", "j1", "escalate")
        assert case.waiting_workflow_id == "journey/j1/customer/1"
        assert await session.scalar(select(func.count()).select_from(Case)) == 1
        assert await session.scalar(select(func.count()).select_from(Event)) == 1
        assert await session.scalar(select(func.count()).select_from(CaseOutbox)) == 1


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"team": "ghosts"}, "no team 'ghosts'"),
        ({"priority": "critical"}, "priority 'critical'"),
        ({"customer_id": 99999}, "no customer 99999"),
    ],
)
async def test_an_impossible_case_fails_without_retrying(sessions, change, problem):
    await make_team(sessions, "care")
    customer = await make_customer(sessions, "u1")
    values = {"idempotency_key": "k", "customer_id": customer, "reason": "x", "team": "care", **change}
    with pytest.raises(ApplicationError) as raised:
        await ActivityEnvironment().run(CaseActivities(sessions).open_case, OpenCaseRequest(**values))
    assert raised.value.type == CASE_REJECTED
    assert raised.value.non_retryable
    assert problem in str(raised.value)
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Case)) == 0
