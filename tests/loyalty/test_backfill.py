"""A rule's `since` back-fills once the earner is running: its cursor is past the old events, so the
rule goes back over them on its own, and no other rule judges them again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from domain.db import transaction, utcnow
from domain.loyalty import maintenance
from domain.loyalty.earner import backfill_once
from domain.loyalty.models import LoyaltyCursor
from domain.loyalty.schemas import POINTS_EARNED
from runtime.loyalty_earner import LoyaltyEarner
from tests.loyalty.helpers import PROGRAM, audit, emitted, entries
from tests.loyalty.test_earning import customer_of, track


async def _run(earner: LoyaltyEarner, passes: int = 200) -> None:
    """The earner's passes until it has nothing left to do."""
    for _ in range(passes):
        if not await earner.step():
            return
    raise AssertionError(f"still busy after {passes} passes")


async def _put(client, headers, rules: list[dict]) -> None:
    response = await client.put("/api/loyalty/program", json={**PROGRAM, "rules": rules}, headers=headers)
    assert response.status_code == 200, response.text


async def _earned(sessions, user_id: str) -> list[tuple[str, int]]:
    return [(e.rule_id, e.points) for e in await entries(sessions, await customer_of(sessions, user_id))]


PURCHASE = {"id": "purchase", "event": "Order Completed", "points_per_unit": 1}
REVIEW = {"id": "review", "event": "Review Written", "points": 50, "cap_per_day": 100}
APP_ORDER = {"id": "app-order", "event": "Order Completed", "where": {"channel": "app"}, "points": 20}


async def test_an_earlier_since_back_fills_that_rule_once_and_no_other(
    client, sessions, write_key, admin_headers
):
    # Last month: ann wrote three reviews in a day and ordered in the app, bo wrote one review.
    # Nothing earns them: the programme starts now.
    day = datetime.now(UTC).replace(hour=9, minute=0, second=0, microsecond=0) - timedelta(days=20)
    for hour in range(3):
        await track(
            client,
            write_key,
            "ann",
            "Review Written",
            {},
            timestamp=(day + timedelta(hours=hour)).isoformat(),
        )
    await track(
        client,
        write_key,
        "ann",
        "Order Completed",
        {"revenue": 80, "channel": "app"},
        timestamp=day.isoformat(),
    )
    await track(client, write_key, "bo", "Review Written", {}, timestamp=day.isoformat())
    await _put(client, admin_headers, [PURCHASE, REVIEW])
    earner = LoyaltyEarner(sessions, batch_size=2)  # back-fills in windows of two ids
    await _run(earner)
    await track(client, write_key, "ann", "Order Completed", {"revenue": 10, "channel": "web"})
    await _run(earner)
    assert await _earned(sessions, "ann") == [("purchase", 10)]
    assert await _earned(sessions, "bo") == []

    # The marketer back-fills reviews from a month ago, adds an app-order rule from then too, and
    # doubles the purchase rule (which keeps its start: old orders stay unearned by it).
    month_ago = (datetime.now(UTC) - timedelta(days=30)).isoformat()
    await _put(
        client,
        admin_headers,
        [
            {**PURCHASE, "points_per_unit": 2},
            {**REVIEW, "since": month_ago},
            {**APP_ORDER, "since": month_ago},
        ],
    )
    # A worker restarted part way through goes on from where the back-fills stood.
    await earner.step()
    earner = LoyaltyEarner(sessions, batch_size=2)
    await _run(earner)

    # The day's cap holds for the back-filled reviews: 50 + 50, the third earns nothing.
    assert sorted(await _earned(sessions, "ann")) == [
        ("app-order", 20),
        ("purchase", 10),
        ("review", 50),
        ("review", 50),
    ]
    assert await _earned(sessions, "bo") == [("review", 50)]
    ann = await customer_of(sessions, "ann")
    account = (await client.get(f"/api/loyalty/{ann}", headers=admin_headers)).json()
    assert account["balance"] == 130
    assert (await audit(sessions, ann)).consistent
    async with sessions() as session:
        assert list(await session.scalars(select(LoyaltyCursor.name))) == ["events"]  # both finished

    # Passes again, and the same programme put back as it reads now (its since's included), earn
    # nothing more; nor does moving the start back once more over events already earned.
    program = (await client.get("/api/loyalty/program", headers=admin_headers)).json()["config"]
    await _put(client, admin_headers, program["rules"])
    earlier = (datetime.now(UTC) - timedelta(days=40)).isoformat()
    purchase, *backfilled = program["rules"]
    await _put(client, admin_headers, [purchase, *({**r, "since": earlier} for r in backfilled)])
    await _run(earner)
    await _run(LoyaltyEarner(sessions, batch_size=500))
    assert len(await entries(sessions, ann)) == 4
    assert await _earned(sessions, "bo") == [("review", 50)]


async def test_a_back_fill_whose_rule_is_removed_stops(client, sessions, write_key, admin_headers):
    await track(client, write_key, "cy", "Review Written", {}, timestamp="2000-01-02T00:00:00Z")
    await _put(client, admin_headers, [REVIEW])
    await _put(client, admin_headers, [{**REVIEW, "since": "2000-01-01T00:00:00Z"}])
    await _put(client, admin_headers, [PURCHASE])
    await _run(LoyaltyEarner(sessions))
    assert await _earned(sessions, "cy") == []
    async with transaction(sessions) as session:
        assert list(await session.scalars(select(LoyaltyCursor.name))) == ["events"]


async def test_a_back_fill_awards_no_points_that_would_already_have_expired(
    client, sessions, write_key, admin_headers
):
    """Back-filled points of events older than `expiry_months` were awarded with an expiry already
    passed: `Points Earned`, then at the next expiry pass `Points Expiring Soon` and `Points Expired`
    for points the member never had. They earn nothing now; those still within expiry earn as ever."""
    now = datetime.now(UTC)
    for days in (400, 370, 300):  # the programme's points expire after 12 months
        await track(
            client, write_key, "di", "Review Written", {}, timestamp=(now - timedelta(days=days)).isoformat()
        )
    await _put(client, admin_headers, [REVIEW])
    await _put(client, admin_headers, [{**REVIEW, "since": (now - timedelta(days=500)).isoformat()}])
    await _run(LoyaltyEarner(sessions))

    di = await customer_of(sessions, "di")
    (earned,) = await entries(sessions, di)
    assert (earned.kind, earned.points, earned.occurred_at.date()) == (
        "earn",
        50,
        (now - timedelta(days=300)).date(),
    )
    async with transaction(sessions) as session:
        await maintenance.warn_expiring(session, utcnow(), 100)
        assert await maintenance.expire_due(session, utcnow(), 100) == 0
    assert [e.name for e in await emitted(sessions)] == [POINTS_EARNED]
    account = (await client.get(f"/api/loyalty/{di}", headers=admin_headers)).json()
    assert (account["balance"], account["lifetime_earned"]) == (50, 50)
    assert (await audit(sessions, di)).consistent


async def test_a_back_fill_reads_its_rules_events_only_not_every_event_stored(
    client, sessions, write_key, admin_headers
):
    """A back-fill went through every stored id down to 1 a window at a time, whatever the rule's
    event: with 600 page views and 3 reviews it took 302 passes in windows of two. It now reads the
    rule's track events only (an index by name), newest first: two reviews a pass, then one, done."""
    month_ago = datetime.now(UTC) - timedelta(days=30)

    def review(days_after_since: int) -> dict:
        at = (month_ago + timedelta(days=days_after_since)).isoformat()
        return {"type": "track", "userId": "ed", "event": "Review Written", "properties": {}, "timestamp": at}

    views = [{"type": "track", "userId": "ed", "event": "Page Viewed", "properties": {}}] * 300
    page = {"type": "page", "userId": "ed", "name": "Review Written", "properties": {}}  # not a track
    calls = [*views, review(1), *views, review(1), page, review(-1)]  # the last: before since
    response = await client.post("/v1/batch", json={"batch": calls}, auth=(write_key, ""))
    assert response.status_code == 200, response.text
    await _put(client, admin_headers, [REVIEW])
    await _put(client, admin_headers, [{**REVIEW, "since": month_ago.isoformat()}])

    passes = 0
    while (await backfill_once(sessions, utcnow(), 2))[0]:
        passes += 1
        assert passes <= 3, "the back-fill reads more than the rule's events"

    assert passes == 2  # reviews 3 and 2 (the one before since earns nothing), then review 1
    assert await _earned(sessions, "ed") == [("review", 50), ("review", 50)]  # the day's cap: 100
    async with sessions() as session:
        assert list(await session.scalars(select(LoyaltyCursor.name))) == ["events"]
