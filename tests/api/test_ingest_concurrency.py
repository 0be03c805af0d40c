"""Many senders, duplicate messageIds and whole-batch retries at once: exactly the distinct events are
stored, each trigger is queued for routing once, and the profile facts add up."""

import asyncio
import random
from decimal import Decimal

from sqlalchemy import func, select

from domain.customers.models import Customer
from domain.events.models import Event, EventOutbox

DISTINCT = 8_000
DUPLICATES = 2_000  # 20 % of the 10 000 sent
BATCH = 100


def _events(rng: random.Random) -> tuple[list[dict], list[dict]]:
    events = []
    for i in range(DISTINCT):
        user = f"user-{rng.randrange(200)}"
        if i % 10 == 0:
            events.append({"type": "identify", "userId": user, "traits": {"n": i}, "messageId": f"m-{i}"})
        elif i % 4 == 0:
            events.append(
                {
                    "type": "track",
                    "userId": user,
                    "event": "Order Completed",
                    "properties": {"revenue": 2.5},
                    "messageId": f"m-{i}",
                }
            )
        else:
            events.append({"type": "track", "userId": user, "event": "Viewed", "messageId": f"m-{i}"})
    sent = events + [dict(rng.choice(events)) for _ in range(DUPLICATES)]
    rng.shuffle(sent)
    return events, sent


async def test_ten_thousand_concurrent_events_with_duplicates_and_retries(client, sessions, write_key):
    rng = random.Random(7)
    distinct, sent = _events(rng)
    batches = [sent[i : i + BATCH] for i in range(0, len(sent), BATCH)]
    retried = rng.sample(range(len(batches)), 10)
    requests = [*batches, *(batches[i] for i in retried)]  # a client retrying after a timeout
    rng.shuffle(requests)
    gate = asyncio.Semaphore(12)

    async def post(batch):
        async with gate:
            response = await client.post("/v1/batch", json={"batch": batch}, auth=(write_key, ""))
            assert response.status_code == 200, response.text

    await asyncio.gather(*(post(b) for b in requests))

    tracks = [e for e in distinct if e["type"] == "track"]
    orders = [e for e in tracks if e["event"] == "Order Completed"]
    async with sessions() as session:
        stored = set(await session.scalars(select(Event.message_id)))
        assert stored == {e["messageId"] for e in distinct}
        queued = list(
            await session.scalars(
                select(Event.message_id).join(EventOutbox, EventOutbox.event_id == Event.id)
            )
        )
        assert sorted(queued) == sorted(e["messageId"] for e in tracks)  # each trigger once
        totals = (
            await session.execute(
                select(
                    func.sum(Customer.event_count),
                    func.sum(Customer.order_count),
                    func.sum(Customer.lifetime_value),
                    func.count(),
                )
            )
        ).one()
        assert totals[0] == DISTINCT
        assert totals[1] == len(orders)
        assert Decimal(totals[2]) == Decimal("2.5") * len(orders)
        assert totals[3] == len({e["userId"] for e in distinct})
        per_customer = dict(
            (await session.execute(select(Event.customer_id, func.count()).group_by(Event.customer_id))).all()
        )
        counts = dict((await session.execute(select(Customer.id, Customer.event_count))).all())
        assert per_customer == counts
