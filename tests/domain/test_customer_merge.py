"""A visitor merged into a known customer: nothing recorded about the visitor is lost."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update
from temporalio.testing import ActivityEnvironment

from activities.contracts import PointsRequest
from activities.loyalty import LoyaltyActivities
from domain.cases import service as cases
from domain.cases.models import Case
from domain.cases.schemas import TeamIn
from domain.customers import service as customers
from domain.customers.models import Customer
from domain.db import transaction, utcnow
from domain.events import service as events
from domain.events.schemas import IdentifyCall, TrackCall
from domain.journeys import repository as journey_rows
from domain.journeys.models import JourneyListener
from domain.loyalty import maintenance
from domain.loyalty import service as loyalty
from domain.loyalty.models import LoyaltyFoldedKey
from domain.loyalty.schemas import POINTS_EXPIRING_SOON, RedeemIn
from domain.subscriptions import repository as choices
from domain.subscriptions import service as subscriptions
from domain.subscriptions.models import Subscription
from domain.subscriptions.schemas import GroupIn
from tests.loyalty.helpers import PROGRAM, emitted, entries, set_program


async def _profile(sessions, call) -> int:
    async with transaction(sessions) as session:
        await events.ingest(session, [call], source_key_id=None)
    async with sessions() as session:
        key = Customer.user_id == call.userId if call.userId else Customer.anonymous_id == call.anonymousId
        return await session.scalar(select(Customer.id).where(key))


async def _choose(session, customer_id: int, group: str, subscribed: bool, *, days_ago: int) -> None:
    await choices.set_choice(session, customer_id, group, subscribed, "preferences")
    await session.execute(
        update(Subscription)
        .where(Subscription.customer_id == customer_id, Subscription.group_id == group)
        .values(updated_at=utcnow() - timedelta(days=days_ago))
    )


async def test_the_visitors_case_listeners_and_choices_move_to_the_known_customer(sessions):
    kim = await _profile(sessions, IdentifyCall(userId="kim", traits={"email": "kim@example.com"}))
    visitor = await _profile(sessions, TrackCall(anonymousId="v-1", event="Chat Started"))
    async with transaction(sessions) as session:
        await cases.create_team(session, TeamIn(id="care", name="Care"))
        await cases.open_case(
            session, cases.OpenCase(customer_id=visitor, reason="Asked for help", team="care")
        )
        for group in ("news", "offers", "tips"):
            await subscriptions.create_group(session, GroupIn(id=group, name=group))
        # Where both chose, the later choice stands, whoever made it.
        await _choose(session, kim, "news", False, days_ago=1)
        await _choose(session, visitor, "news", True, days_ago=30)
        await _choose(session, kim, "tips", True, days_ago=30)
        await _choose(session, visitor, "tips", False, days_ago=1)  # unsubscribed before logging in
        await _choose(session, visitor, "offers", False, days_ago=5)
        await journey_rows.add_listeners(session, "journey/cart/customer/v", visitor, ["Order Completed"])

    await _profile(sessions, IdentifyCall(userId="kim", anonymousId="v-1", traits={}))

    async with sessions() as session:
        assert [(c.customer_id, c.reason) for c in await session.scalars(select(Case))] == [
            (kim, "Asked for help")
        ]
        stored = await session.execute(
            select(Subscription.customer_id, Subscription.group_id, Subscription.subscribed).order_by(
                Subscription.group_id
            )
        )
        assert stored.all() == [(kim, "news", False), (kim, "offers", False), (kim, "tips", False)]
        listeners = await session.execute(select(JourneyListener.customer_id, JourneyListener.event_name))
        assert listeners.all() == [(kim, "Order Completed")]
        assert await session.get(Customer, visitor) is None
        assert await customers.current_ids(session, [visitor, kim]) == {visitor: kim, kim: kim}


async def test_a_profile_merged_twice_names_the_last_one(sessions):
    kim = await _profile(sessions, IdentifyCall(userId="kim", traits={}))
    first = await _profile(sessions, TrackCall(anonymousId="v-1", event="Viewed"))
    second = await _profile(sessions, TrackCall(anonymousId="v-2", event="Viewed"))
    async with transaction(sessions) as session:
        await customers.merge(session, source_id=first, target_id=second)
    async with transaction(sessions) as session:
        await customers.merge(session, source_id=second, target_id=kim)

    async with sessions() as session:
        assert await customers.current_ids(session, [first, second, kim]) == {
            first: kim,
            second: kim,
            kim: kim,
        }


async def _earn(sessions, customer_id: int, points: int, key: str) -> None:
    async with transaction(sessions) as session:
        await loyalty.award(session, customer_id, key, points, "welcome", utcnow())


async def _account(sessions, customer_id: int):
    async with sessions() as session:
        found = await loyalty.account(session, customer_id, utcnow(), expiring_within_days=400)
        return found, await loyalty.audit(session, customer_id)


async def test_a_visitors_points_go_to_a_customer_without_an_account_with_their_ledger(sessions):
    await set_program(sessions)
    kim = await _profile(sessions, IdentifyCall(userId="kim", traits={}))
    visitor = await _profile(sessions, TrackCall(anonymousId="v-1", event="Viewed"))
    await _earn(sessions, visitor, 120, "k1")

    await _profile(sessions, IdentifyCall(userId="kim", anonymousId="v-1", traits={}))

    account, audit = await _account(sessions, kim)
    assert (account.balance, account.lifetime_earned) == (120, 120)
    assert audit.consistent, audit.problems
    assert [(e.customer_id, e.points) for e in await entries(sessions)] == [(kim, 120)]


async def test_a_visitors_open_points_are_credited_to_a_customer_who_has_an_account(sessions):
    await set_program(sessions)
    kim = await _profile(sessions, IdentifyCall(userId="kim", traits={}))
    visitor = await _profile(sessions, TrackCall(anonymousId="v-1", event="Viewed"))
    await _earn(sessions, kim, 500, "k1")
    await _earn(sessions, visitor, 120, "k2")
    async with transaction(sessions) as session:  # the visitor spent some: only what is left moves
        await loyalty.redeem(session, visitor, "r1", RedeemIn(points=20, reason="coffee"), utcnow())

    await _profile(sessions, IdentifyCall(userId="kim", anonymousId="v-1", traits={}))

    account, audit = await _account(sessions, kim)
    assert account.balance == 600
    assert audit.consistent, audit.problems
    assert [lot.remaining for lot in account.expiring] == [500, 100]
    # Kim's tier counts her own earnings; the visitor's points arrive as an adjustment.
    assert account.tier_points == 500
    assert [(e.kind, e.points, e.source) for e in await entries(sessions, kim)] == [
        ("earn", 500, "journey"),
        ("adjust", 100, "merge"),
    ]


async def test_merged_points_keep_the_expiry_they_were_earned_with(sessions):
    """The credit a merge makes for the visitor's points took its expiry from the programme as it is
    now: points earned while nothing expired, arriving after expiry was switched on, expired at once."""
    await set_program(sessions, {**PROGRAM, "expiry_months": None})
    kim = await _profile(sessions, IdentifyCall(userId="kim", traits={}))
    visitor = await _profile(sessions, TrackCall(anonymousId="v-1", event="Viewed"))
    await _earn(sessions, kim, 500, "k1")
    two_years_ago = utcnow() - timedelta(days=730)
    async with transaction(sessions) as session:
        await loyalty.award(session, visitor, "k2", 120, "welcome", two_years_ago)
    await set_program(sessions, {**PROGRAM, "expiry_months": 12})  # from now on, points expire

    await _profile(sessions, IdentifyCall(userId="kim", anonymousId="v-1", traits={}))
    async with transaction(sessions) as session:
        assert await maintenance.expire_due(session, utcnow(), 100) == 0

    account, audit = await _account(sessions, kim)
    assert account.balance == 620
    assert audit.consistent, audit.problems
    merged = [e for e in await entries(sessions, kim) if e.source == "merge"]
    assert [(e.points, e.expires_at) for e in merged] == [(120, None)]


@pytest.mark.parametrize("kim_has_points", [False, True], ids=["ledger handed over", "points credited"])
async def test_points_warned_about_before_a_merge_are_not_warned_about_again(sessions, kim_has_points):
    """The credit a merge makes for the visitor's lot lost the lot's "already warned" mark, so the next
    pass sent `Points Expiring Soon` (and its email) a second time for the same points."""
    await set_program(sessions)  # expire after 12 months, warned 30 days ahead
    kim = await _profile(sessions, IdentifyCall(userId="kim", traits={}))
    visitor = await _profile(sessions, TrackCall(anonymousId="v-1", event="Viewed"))
    if kim_has_points:
        await _earn(sessions, kim, 500, "k1")
    async with transaction(sessions) as session:  # expires in about 15 days
        await loyalty.award(session, visitor, "k2", 120, "welcome", utcnow() - timedelta(days=350))
    async with transaction(sessions) as session:
        assert await maintenance.warn_expiring(session, utcnow(), 100) == 1
    assert len(await emitted(sessions, POINTS_EXPIRING_SOON)) == 1

    await _profile(sessions, IdentifyCall(userId="kim", anonymousId="v-1", traits={}))
    async with transaction(sessions) as session:
        assert await maintenance.warn_expiring(session, utcnow(), 100) == 0
    async with transaction(sessions) as session:  # and when they go, no late warning either
        assert await maintenance.expire_due(session, utcnow() + timedelta(days=20), 100) == 1
    assert len(await emitted(sessions, POINTS_EXPIRING_SOON)) == 1
    account, audit = await _account(sessions, kim)
    assert account.balance == (500 if kim_has_points else 0)
    assert audit.consistent, audit.problems


@pytest.mark.parametrize("kim_has_points", [False, True], ids=["ledger handed over", "points credited"])
async def test_a_journey_step_retried_after_a_merge_does_not_move_points_again(sessions, kim_has_points):
    """A journey started for a visitor awards points and takes some; the replies are lost, the visitor
    logs in (merged into Kim), and Temporal retries both steps: Kim's balance moves once."""
    await set_program(sessions)
    kim = await _profile(sessions, IdentifyCall(userId="kim", traits={}))
    visitor = await _profile(sessions, TrackCall(anonymousId="v-1", event="Viewed"))
    if kim_has_points:
        await _earn(sessions, kim, 500, "kim-own")
    acts, env = LoyaltyActivities(sessions), ActivityEnvironment()
    award = PointsRequest("journey/j1/customer/v-1/bonus/1", visitor, 120, journey_id="j1", node_id="bonus")
    spend = PointsRequest("journey/j1/customer/v-1/spend/1", visitor, 20, journey_id="j1", node_id="spend")
    assert (await env.run(acts.award_points, award)).balance == 120
    assert (await env.run(acts.deduct_points, spend)).balance == 100

    await _profile(sessions, IdentifyCall(userId="kim", anonymousId="v-1", traits={}))
    expected = 100 + (500 if kim_has_points else 0)
    retried_award = await env.run(acts.award_points, award)
    retried_spend = await env.run(acts.deduct_points, spend)

    assert (retried_award.replayed, retried_award.balance) == (True, expected)
    assert (retried_spend.replayed, retried_spend.balance, retried_spend.status) == (
        True,
        expected,
        "applied",
    )
    account, audit = await _account(sessions, kim)
    assert account.balance == expected
    assert audit.consistent, audit.problems


async def test_kept_keys_follow_a_profile_merged_again_and_go_with_an_erasure(sessions):
    await set_program(sessions)
    kim = await _profile(sessions, IdentifyCall(userId="kim", traits={}))
    await _earn(sessions, kim, 10, "kim-own")
    visitor = await _profile(sessions, TrackCall(anonymousId="v-1", event="Viewed"))
    await _earn(sessions, visitor, 120, "visitor-bonus")
    await _profile(sessions, IdentifyCall(userId="kim", anonymousId="v-1", traits={}))
    zoe = await _profile(sessions, IdentifyCall(userId="zoe", traits={}))
    await _earn(sessions, zoe, 5, "zoe-own")
    async with transaction(sessions) as session:  # Kim turns out to be Zoe's old login
        await customers.merge(session, source_id=kim, target_id=zoe)

    async with transaction(sessions) as session:  # the visitor's award, retried under its last owner
        again = await loyalty.award(
            session, zoe, "visitor-bonus", 120, "welcome", utcnow(), enrolled_as=visitor
        )
    assert (again.replayed, again.balance) == (True, 135)
    async with sessions() as session:
        kept = set(await session.scalars(select(LoyaltyFoldedKey.idempotency_key)))
    # Kim's whole ledger: her own award and the entry that brought the visitor's points to her.
    assert kept == {f"journey:{visitor}:visitor-bonus", f"journey:{kim}:kim-own", f"merge/{visitor}/2"}

    async with transaction(sessions) as session:
        await customers.erase(session, zoe, by_key_id=None, reason=None)
    async with sessions() as session:
        assert list(await session.scalars(select(LoyaltyFoldedKey))) == []
