"""Lifetime value has a largest amount its column holds: orders past it still count, and are stored."""

from decimal import Decimal

from sqlalchemy import func, select

from domain.customers.models import MAX_LIFETIME_VALUE, Customer
from domain.events.models import Event

# The largest single order lifetime value takes (one of 10^12 or more is ignored as a mistake).
ORDER = {"type": "track", "event": "Order Completed", "properties": {"revenue": 999_999_999_999.99}}


async def _customer(sessions, user_id) -> Customer:
    async with sessions() as session:
        return await session.scalar(select(Customer).where(Customer.user_id == user_id))


async def _events(sessions) -> int:
    async with sessions() as session:
        return await session.scalar(select(func.count()).select_from(Event))


async def test_orders_past_the_largest_lifetime_value_are_stored_and_it_stays_there(
    client, sessions, write_key
):
    auth = (write_key, "")
    # 101 of the largest orders come to more than 10^14, which the column cannot hold: PostgreSQL
    # failed the whole batch with a 500 (retried for ever by Segment's libraries), and then every
    # later order of the customer.
    batch = [{**ORDER, "userId": "whale", "messageId": f"o-{i}"} for i in range(101)]
    response = await client.post("/v1/batch", json={"batch": batch}, auth=auth)
    assert response.status_code == 200, response.text
    response = await client.post("/v1/track", json={**ORDER, "userId": "whale"}, auth=auth)
    assert response.status_code == 200, response.text
    whale = await _customer(sessions, "whale")
    assert whale.order_count == 102 and await _events(sessions) == 102
    assert float(whale.lifetime_value) == float(MAX_LIFETIME_VALUE)

    # A refund takes it down from there, as from any amount.
    refund = {**ORDER, "userId": "whale", "properties": {"revenue": -1}}
    assert (await client.post("/v1/track", json=refund, auth=auth)).status_code == 200
    assert float((await _customer(sessions, "whale")).lifetime_value) == float(MAX_LIFETIME_VALUE - 1)


async def test_merging_two_profiles_keeps_their_lifetime_value_within_the_largest(
    client, sessions, write_key
):
    auth = (write_key, "")
    for who in ({"userId": "known"}, {"anonymousId": "visitor"}):
        batch = [{**ORDER, **who, "messageId": f"{who}-{i}"} for i in range(60)]
        assert (await client.post("/v1/batch", json={"batch": batch}, auth=auth)).status_code == 200
    # The visitor logs in: the two profiles are one, with 120 orders, worth more than 10^14.
    response = await client.post(
        "/v1/identify", json={"userId": "known", "anonymousId": "visitor"}, auth=auth
    )
    assert response.status_code == 200, response.text
    known = await _customer(sessions, "known")
    assert known.order_count == 120 and known.event_count == 121
    assert float(known.lifetime_value) == float(MAX_LIFETIME_VALUE)
    assert Decimal(known.lifetime_value) > 0
