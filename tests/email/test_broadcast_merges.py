"""A broadcast reaches a person once, also when a profile that got it is merged into one the broadcast
has not reached yet (a visitor known by address who logs in as a customer further down the audience)."""

from __future__ import annotations

from sqlalchemy import select

from domain.broadcasts import service as broadcasts
from domain.broadcasts.schemas import BroadcastIn
from domain.customers import service as customers
from domain.db import transaction
from domain.email.models import Message
from tests.email.helpers import add_customer, add_template


def _message_id(key: str) -> str:
    return f"<{key}@test>"


async def _page(sessions, after_id: int) -> broadcasts.BatchPlan:
    """One page as the batch activity runs it: planned, everyone to send to sent, the page closed."""
    async with transaction(sessions) as session:
        plan = await broadcasts.plan_batch(session, "spring", after_id, _message_id)
    async with transaction(sessions) as session:
        keys = {broadcasts.message_key("spring", c["id"]): "Hi" for c in plan.todo}
        await broadcasts.record_results(session, keys, [])
        await broadcasts.finish_batch(session, "spring", 0, plan.last_id, plan.keys)
    return plan


async def test_a_profile_merged_into_one_further_on_brings_its_broadcast_along(sessions):
    visitor = await add_customer(sessions, email="ann@example.com", traits={"first_name": "Ann"})
    other = await add_customer(sessions, email="bob@example.com", traits={"first_name": "Bob"})
    ann = await add_customer(sessions, email="ann.smith@example.com", traits={"first_name": "Ann"})
    await add_template(sessions)
    async with transaction(sessions) as session:
        spec = BroadcastIn(
            id="spring", name="Spring", template_id="welcome", audience={"kind": "all"}, batch_size=1
        )
        await broadcasts.create(session, spec)

    first = await _page(sessions, 0)
    assert [c["id"] for c in first.todo] == [visitor]
    async with transaction(sessions) as session:  # Ann logs in on the device she browsed on
        await customers.merge(session, source_id=visitor, target_id=ann)
    second = await _page(sessions, first.last_id)
    third = await _page(sessions, second.last_id)

    assert [c["id"] for c in second.todo] == [other]
    assert third.todo == [] and ann in third.blocked
    async with transaction(sessions) as session:
        rows = (await session.scalars(select(Message).order_by(Message.id))).all()
        assert [(m.customer_id, m.to_address, m.status) for m in rows] == [
            (ann, "ann@example.com", "sent"),
            (other, "bob@example.com", "sent"),
            (ann, "ann.smith@example.com", "skipped"),
        ]
        assert rows[2].error == "already sent to a profile merged into this customer"
        row = await broadcasts.get(session, "spring")
        assert (row.sent, row.skipped) == (2, 1)
