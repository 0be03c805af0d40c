"""Value tiers (1 / 4 / 15 / 80 by lifetime value) and RFM quintiles from purchase events."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import insert, select

from domain.customers.models import Customer
from domain.db import transaction, utcnow
from domain.events.models import Event
from domain.segments import service as segments
from domain.segments.models import SegmentMembership
from domain.segments.schemas import SegmentIn

PURCHASE = "Order Completed"


async def _shop(sessions, customers: int = 100) -> dict[int, int]:
    """Customer i (1..customers) bought i times for i each; customer 0 never bought. Returns ids."""
    now = utcnow()
    ids = {}
    async with transaction(sessions) as session:
        for i in range(customers + 1):
            cid = await session.scalar(
                insert(Customer)
                .values(user_id=f"c{i}", traits={}, first_seen_at=now, last_seen_at=now)
                .returning(Customer.id)
            )
            ids[i] = cid
            rows = [
                {
                    "message_id": f"{i}-{n}",
                    "type": "track",
                    "name": PURCHASE,
                    "customer_id": cid,
                    "properties": {"revenue": float(i)} if n else {"revenue": "not a number"},
                    "traits": {},
                    "context": {},
                    "timestamp": now - timedelta(days=customers - i, hours=n),
                    "received_at": now,
                }
                for n in range(i + 1)
            ]
            if i:
                await session.execute(insert(Event), rows)
    return ids


async def test_tiers_and_rfm_follow_lifetime_value(sessions, client, marketer_headers):
    ids = await _shop(sessions, 100)
    async with transaction(sessions) as session:
        stats = await segments.recompute_scores(session, PURCHASE)
    assert stats.customers == 101
    async with sessions() as session:
        scores = {i: await segments.scores_for(session, cid) for i, cid in ids.items()}
    # 101 customers: key = top ceil(1.01) = 2, major up to 6, ordinary up to 21.
    assert [i for i, s in scores.items() if s.tier == "key"] == [99, 100]
    assert [i for i, s in scores.items() if s.tier == "major"] == [95, 96, 97, 98]
    assert len([s for s in scores.values() if s.tier == "ordinary"]) == 15
    assert scores[100].ltv == 100 * 100 and scores[100].order_count == 101  # "not a number" counts as 0
    assert scores[0].tier == "small" and scores[0].ltv == 0 and scores[0].recency is None
    # Quintiles among buyers: the most recent, most frequent, biggest spenders score 5.
    assert (scores[100].recency, scores[100].frequency, scores[100].monetary) == (5, 5, 5)
    assert (scores[1].recency, scores[1].frequency, scores[1].monetary) == (1, 1, 1)
    assert sorted({s.recency for s in scores.values() if s.recency}) == [1, 2, 3, 4, 5]

    tiers = (await client.get("/api/segments/tiers", headers=marketer_headers)).json()
    by_tier = {t["tier"]: t for t in tiers["tiers"]}
    assert by_tier["key"]["customers"] == 2 and by_tier["key"]["min_ltv"] == 99 * 99
    assert abs(sum(t["revenue_share"] for t in tiers["tiers"]) - 1) < 1e-9
    assert tiers["top_20_percent_revenue_share"] > 0.5

    async with transaction(sessions) as session:
        again = await segments.recompute_scores(session, PURCHASE)
    assert again.customers == 0  # nothing changed, nothing written


async def test_a_tier_segment_follows_the_recompute(sessions):
    ids = await _shop(sessions, 20)
    async with transaction(sessions) as session:
        await segments.create(session, SegmentIn(id="vip", name="VIP", rule={"value_tier": ["key", "major"]}))
        await segments.recompute_scores(session, PURCHASE)
    async with sessions() as session:
        members = set(
            (
                await session.scalars(
                    select(SegmentMembership.customer_id).where(SegmentMembership.exited_at.is_(None))
                )
            ).all()
        )
    # 21 customers: key = top 1, major up to ceil(1.05) = 2.
    assert members == {ids[20], ids[19]}


async def test_value_tiers_count_the_revenue_the_profile_counts(
    sessions, client, marketer_headers, write_key
):
    """An amount sent as a string ("49.90") adds to the profile's lifetime value at ingestion, and an
    absurd one (10^12 or more) adds nothing: the value tier and monetary score read orders the same way."""
    orders = {
        "as-text": [{"revenue": "49.90"}, {"revenue": " 10.10 "}],
        "as-number": [{"revenue": 30}],
        "absurd": [{"revenue": 1e13}, {"revenue": 5}],
        "not-a-number": [{"revenue": "12abc"}, {"revenue": True}, {"revenue": 1}],
    }
    batch = [
        {"type": "track", "userId": user, "event": PURCHASE, "properties": props}
        for user, placed in orders.items()
        for props in placed
    ]
    response = await client.post("/v1/batch", json={"batch": batch}, auth=(write_key, ""))
    assert response.status_code == 200, response.text
    async with transaction(sessions) as session:
        await segments.recompute_scores(session, PURCHASE)
    seen = {}
    for user in orders:
        found = (await client.get("/api/customers", params={"q": user}, headers=marketer_headers)).json()
        (customer,) = found["items"]
        view = (await client.get(f"/api/customers/{customer['id']}", headers=marketer_headers)).json()
        seen[user] = (view["facts"]["lifetime_value"], view["loyalty"]["value"])
    assert {user: facts for user, (facts, _) in seen.items()} == {
        "as-text": 60.0,
        "as-number": 30.0,
        "absurd": 5.0,
        "not-a-number": 1.0,
    }
    # The scores' lifetime value is the profile's, and so is the order of the customers by it.
    assert {user: value["ltv"] for user, (_, value) in seen.items()} == {
        user: facts for user, (facts, _) in seen.items()
    }
    by_value = ("not-a-number", "absurd", "as-number", "as-text")
    assert [seen[user][1]["monetary"] for user in by_value] == [1, 2, 3, 4]
    assert seen["as-text"][1]["tier"] == "key"


async def _buyers(sessions, orders: list[list[float]]) -> list[int]:
    """Customer i placed ``orders[i]`` (one amount per order), the latest order i hours ago."""
    now = utcnow()
    ids = []
    async with transaction(sessions) as session:
        for i, amounts in enumerate(orders):
            cid = await session.scalar(
                insert(Customer)
                .values(user_id=f"b{i}", traits={}, first_seen_at=now, last_seen_at=now)
                .returning(Customer.id)
            )
            ids.append(cid)
            for n, amount in enumerate(amounts):
                when = now - timedelta(hours=i, days=n)
                await session.execute(
                    insert(Event).values(
                        message_id=f"b{i}-{n}",
                        type="track",
                        name=PURCHASE,
                        customer_id=cid,
                        properties={"revenue": amount},
                        traits={},
                        context={},
                        timestamp=when,
                        received_at=when,
                    )
                )
        await segments.recompute_scores(session, PURCHASE)
    return ids


async def _scores(sessions, ids: list[int]) -> list:
    async with sessions() as session:
        return [await segments.scores_for(session, cid) for cid in ids]


async def test_customers_who_bought_alike_score_alike(sessions):
    # Eight one-time buyers of the same 10.0 order, two who ordered three times.
    scores = await _scores(sessions, await _buyers(sessions, [[10.0]] * 8 + [[10.0] * 3] * 2))
    # A quintile split them by customer id: one-time buyers scored frequency 1 to 4 and monetary 1 to
    # 4, so "frequency at least 4" held customers who had ordered once.
    assert [s.frequency for s in scores] == [1] * 8 + [5, 5]
    assert [s.monetary for s in scores] == [1] * 8 + [5, 5]
    assert sorted({s.recency for s in scores}) == [1, 2, 3, 4, 5]  # the last orders all differ


async def test_customers_who_spent_alike_share_a_value_tier(sessions):
    # 200 customers: four tie at the top with 500, the rest spent 1 to 196.
    spent = [[500.0]] * 4 + [[float(n)] for n in range(196, 0, -1)]
    scores = await _scores(sessions, await _buyers(sessions, spent))
    # key is the top 1 % (2 customers): four tie for it, none is ahead of the others, so none is key
    # (by customer id two of them were) and a tier never holds more than its share.
    assert [s.tier for s in scores[:4]] == ["major"] * 4
    assert "key" not in {s.tier for s in scores}
    assert [s.tier for s in scores[4:10]] == ["major"] * 6  # major: the top 5 % (10)
    assert {s.tier for s in scores[10:40]} == {"ordinary"}  # ordinary: the top 20 % (40)
    assert {s.tier for s in scores[40:]} == {"small"}


async def test_buyers_who_all_tie(sessions):
    # Everyone bought one 20.0 order: nobody stands out, every score is the same.
    scores = await _scores(sessions, await _buyers(sessions, [[20.0]] * 6))
    assert {(s.frequency, s.monetary, s.tier) for s in scores} == {(1, 1, "small")}
