from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select, text

from domain.db import transaction, utcnow
from domain.events.models import Event
from domain.loyalty import repository
from domain.loyalty import service as loyalty
from domain.loyalty.earner import EventCursor, earn_once
from domain.loyalty.models import LoyaltyCursor
from tests.loyalty.helpers import PROGRAM, audit, emitted, entries, make_customer, set_program

LONG_AGO = datetime(2000, 1, 1, tzinfo=UTC)


async def track(client, write_key, user_id: str, event: str, properties: dict, **extra):
    response = await client.post(
        "/v1/track",
        json={"userId": user_id, "event": event, "properties": properties, **extra},
        auth=(write_key, ""),
    )
    assert response.status_code == 200, response.text


async def earn_all(sessions, cursor: EventCursor | None = None, batch_size: int = 100) -> int:
    cursor = cursor or EventCursor()
    written = 0
    while True:
        read, wrote = await earn_once(sessions, cursor, utcnow(), batch_size)
        written += wrote
        if read == 0:
            return written


async def customer_of(sessions, user_id: str) -> int:
    async with sessions() as session:
        return await session.scalar(select(Event.customer_id).where(Event.user_id == user_id).limit(1))


async def test_the_same_event_ingested_twice_earns_once(client, sessions, write_key, marketer_headers):
    await set_program(sessions, since=LONG_AGO)
    for _ in range(2):
        await track(client, write_key, "ann", "Order Completed", {"revenue": 120.75}, messageId="order-1")
    assert await earn_all(sessions) == 1
    # A restarted earner (fresh cursor memory, cursor row reset) and a direct second call earn nothing.
    async with transaction(sessions) as session:
        (await session.get(LoyaltyCursor, "events")).position = 0
    assert await earn_all(sessions) == 0
    async with transaction(sessions) as session:
        stored = list(await session.scalars(select(Event).where(Event.name == "Order Completed")))
        events = [
            loyalty.StoredEvent(e.id, e.type, e.name, e.customer_id, e.properties, e.timestamp)
            for e in stored
        ]
        assert await loyalty.on_events(session, events, utcnow()) == 0

    customer = await customer_of(sessions, "ann")
    earned = await entries(sessions, customer)
    assert [(e.kind, e.points, e.rule_id) for e in earned] == [("earn", 120, "purchase")]
    assert earned[0].idempotency_key == f"event:{stored[0].id}:purchase"
    account = (await client.get(f"/api/loyalty/{customer}", headers=marketer_headers)).json()
    assert account["balance"] == 120 and account["lifetime_earned"] == 120
    points_earned = await emitted(sessions, "Points Earned")
    assert len(points_earned) == 1
    assert points_earned[0].properties["points"] == 120
    assert points_earned[0].properties["source_event_id"] == stored[0].id


async def test_rules_multipliers_tiers_and_caps(client, sessions, write_key):
    config = {
        **PROGRAM,
        "rules": [
            {
                "id": "purchase",
                "event": "Order Completed",
                "points_per_unit": 100,
                "where": {"channel": "web"},
            },
            {
                "id": "review",
                "event": "Review Written",
                "points": 50,
                "cap_per_day": 100,
                "cap_per_month": 120,
            },
        ],
    }
    await set_program(sessions, config, since=LONG_AGO)
    day = datetime.now(UTC).replace(hour=10, minute=0, second=0, microsecond=0) - timedelta(days=3)
    # 0.29 * 100 is 28.999... in floating point; the rule must award 29.
    await track(client, write_key, "bo", "Order Completed", {"revenue": 0.29, "channel": "web"})
    await track(client, write_key, "bo", "Order Completed", {"revenue": 99, "channel": "store"})  # filtered
    await track(
        client, write_key, "bo", "Order Completed", {"revenue": "oops", "channel": "web"}
    )  # no amount
    await track(client, write_key, "bo", "Order Completed", {"revenue": -10, "channel": "web"})  # refund
    for i in range(3):  # 50 + 50 + 0: the day is capped at 100
        await track(
            client, write_key, "bo", "Review Written", {}, timestamp=(day + timedelta(hours=i)).isoformat()
        )
    await track(
        client, write_key, "bo", "Review Written", {}, timestamp=(day + timedelta(days=1)).isoformat()
    )
    await earn_all(sessions)
    customer = await customer_of(sessions, "bo")
    earned = [(e.rule_id, e.points) for e in await entries(sessions, customer)]
    # The next day is a new day, but the month cap (120) leaves only 20 (when both days share a month).
    same_month = day.month == (day + timedelta(days=1)).month
    assert earned == [("purchase", 29), ("review", 50), ("review", 50), ("review", 20 if same_month else 50)]

    # 600 points reach silver (500): a Tier Changed event, and the next purchase earns 1.5x.
    await track(client, write_key, "bo", "Order Completed", {"revenue": 6.0, "channel": "web"})
    await track(client, write_key, "bo", "Order Completed", {"revenue": 1.0, "channel": "web"})
    await earn_all(sessions)
    earned = [(e.rule_id, e.points) for e in await entries(sessions, customer)]
    assert earned[-2:] == [("purchase", 600), ("purchase", 150)]
    changes = await emitted(sessions, "Tier Changed")
    assert [
        (c.properties["from_tier"], c.properties["to_tier"], c.properties["direction"]) for c in changes
    ] == [("member", "silver", "up")]
    assert (await audit(sessions, customer)).consistent


async def test_a_huge_order_earns_at_most_one_movement_and_never_stops_earning(client, sessions, write_key):
    """A large order at a generous rate made more points than a 64-bit column holds: the earning pass
    failed on it at every retry, and nobody earned anything after it."""
    rule = {"id": "purchase", "event": "Order Completed", "points_per_unit": 1_000_000}
    await set_program(sessions, {**PROGRAM, "rules": [rule]}, since=LONG_AGO)
    await track(client, write_key, "big", "Order Completed", {"revenue": 999_999_999_999})
    await track(client, write_key, "big", "Order Completed", {"revenue": 10**13})  # a mistake, not an order
    await track(client, write_key, "next", "Order Completed", {"revenue": 2})
    await earn_all(sessions)
    big = [e.points for e in await entries(sessions, await customer_of(sessions, "big"))]
    after = [e.points for e in await entries(sessions, await customer_of(sessions, "next"))]
    assert (big, after) == ([1_000_000_000], [2_000_000])
    assert (await audit(sessions, await customer_of(sessions, "big"))).consistent


async def test_a_new_rule_does_not_earn_from_events_stored_before_it(client, sessions, write_key):
    await track(client, write_key, "cy", "Review Written", {})
    await set_program(sessions)  # the rule starts now
    await track(client, write_key, "cy", "Review Written", {})
    await earn_all(sessions)
    customer = await customer_of(sessions, "cy")
    assert [e.points for e in await entries(sessions, customer)] == [50]


async def test_an_event_that_commits_late_under_a_lower_id_still_earns(sessions):
    """PostgreSQL hands out ids before commit: id 3 may become visible after id 4."""
    await set_program(
        sessions, {"rules": [{"id": "review", "event": "Review Written", "points": 5}]}, since=LONG_AGO
    )
    customer = await make_customer(sessions, "di")

    async def store(event_id: int):
        async with transaction(sessions) as session:
            session.add(
                Event(
                    id=event_id,
                    message_id=f"m{event_id}",
                    type="track",
                    name="Review Written",
                    customer_id=customer,
                    properties={},
                    traits={},
                    context={},
                    timestamp=utcnow(),
                )
            )

    async with transaction(sessions) as session:
        if session.bind.dialect.name == "postgresql":  # keep generated ids clear of the ones we pick
            await session.execute(text("SELECT setval(pg_get_serial_sequence('events', 'id'), 1000)"))
    clock = [0.0]
    cursor = EventCursor(gap_timeout=60, clock=lambda: clock[0])
    for event_id in (1, 2, 4, 5, 6, 7):
        await store(event_id)
    await earn_all(sessions, cursor, batch_size=2)  # reading goes on past the hole, batch after batch
    assert [e.event_id for e in await entries(sessions, customer)] == [1, 2, 4, 5, 6, 7]
    async with sessions() as session:
        assert (await session.get(LoyaltyCursor, "events")).position == 2  # held back by the hole at 3
    await store(3)
    await earn_all(sessions, cursor)
    assert sorted(e.event_id for e in await entries(sessions, customer)) == [1, 2, 3, 4, 5, 6, 7]
    async with sessions() as session:
        assert (await session.get(LoyaltyCursor, "events")).position >= 7
    clock[0] = 61  # any hole left (the ids PostgreSQL skipped above) is given up on after the timeout
    await earn_all(sessions, cursor)
    async with sessions() as session:
        newest = await session.scalar(select(func.max(Event.id)))  # our own Points Earned events too
        assert (await session.get(LoyaltyCursor, "events")).position == newest
    assert len(await entries(sessions, customer)) == 7


def test_a_hole_holds_the_position_until_it_fills_or_times_out_but_never_stalls_reading():
    clock = [0.0]
    cursor = EventCursor(gap_timeout=60, clock=lambda: clock[0])
    cursor.resume(0)
    plan = cursor.plan([], [1, 2, 5, 6])
    assert (plan.position, plan.seen_upto, sorted(plan.holes)) == (2, 6, [3, 4])
    cursor.apply(plan)
    clock[0] = 30
    plan = cursor.plan([4], [7])  # 4 committed late; reading goes on past the hole at 3
    assert (plan.position, plan.seen_upto, sorted(plan.holes)) == (2, 7, [3])
    cursor.apply(plan)
    clock[0] = 61
    plan = cursor.plan([], [])
    assert (plan.position, plan.holes) == (7, {})
    # A pass that rolled back (plan never applied) leaves the cursor as it was.
    cursor.plan([], [9])
    assert cursor.seen_upto == 7


async def test_a_rule_start_without_an_offset_is_refused_and_earning_goes_on(
    client, sessions, write_key, admin_headers
):
    """A `since` without an offset was stored as given; comparing it with event times then failed
    every earning pass, so nobody earned anything from any rule."""
    await set_program(sessions, since=LONG_AGO)
    naive = {**PROGRAM, "rules": [{**PROGRAM["rules"][0], "since": "2000-01-01T00:00:00"}]}
    response = await client.put("/api/loyalty/program", json=naive, headers=admin_headers)
    assert response.status_code == 422, response.text
    assert [d["field"] for d in response.json()["detail"]] == ["rules.0.since"]
    assert (await client.get("/api/loyalty/program", headers=admin_headers)).json()["version"] == 1

    # One stored before the check (the database holds it as given) reads as UTC, and earns.
    async with transaction(sessions) as session:
        await repository.save_program(session, naive, utcnow())
    await track(client, write_key, "ed", "Order Completed", {"revenue": 30})
    await earn_all(sessions)
    assert [e.points for e in await entries(sessions, await customer_of(sessions, "ed"))] == [30]
