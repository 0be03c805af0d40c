"""A change of whether a customer may be mailed is stored as a ``Subscription Changed`` event of each
customer it concerns, queued for the router in the same transaction."""

from __future__ import annotations

from sqlalchemy import select

from domain.db import transaction
from domain.events.models import Event, EventOutbox
from domain.subscriptions import service as subscriptions
from domain.subscriptions.events import CONTEXT, SUBSCRIPTION_CHANGED
from tests.email.helpers import add_customer


async def test_an_unsubscribe_from_all_stores_an_event_for_the_choice_and_one_for_the_address(sessions):
    ann = await add_customer(sessions, email="ann@example.com", traits={})
    await add_customer(sessions, email="bob@example.com", traits={})  # another address: no event

    async with transaction(sessions) as session:
        await subscriptions.unsubscribe(session, ann, subscriptions.ALL_GROUPS, "one_click")

    async with sessions() as session:
        stored = (await session.scalars(select(Event).order_by(Event.id))).all()
        queued = set((await session.scalars(select(EventOutbox.event_id))).all())
    choice = {"group_id": subscriptions.ALL_GROUPS, "subscribed": False, "source": "one_click"}
    suppressed = {"suppressed": True, "reason": "unsubscribed"}
    assert [e.properties for e in stored] == [choice, suppressed]  # by customer id, then by address
    for event in stored:
        assert (event.type, event.name, event.customer_id) == ("track", SUBSCRIPTION_CHANGED, ann)
        assert (event.user_id, event.anonymous_id) == ("ann@example.com", None)
        assert event.message_id.startswith("subscriptions/") and event.message_id.endswith(f"/{ann}")
        assert (event.traits, event.context) == ({}, CONTEXT)
        assert event.timestamp == event.received_at
    assert stored[0].message_id != stored[1].message_id  # one change, one id
    assert queued == {e.id for e in stored}
