"""Two profiles of one person, each given a journey's welcome bonus, are merged: the person keeps one.

A journey that admits a person once gave its bonus to the visitor and to the customer they turned out
to be; the merge used to add the two up. Now the customer keeps their own, the visitor's copy is
reversed by an entry naming the merge, purchases stay, the balance never goes below zero, and the
enrollment that goes on does not give the bonus again."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta

import pytest
from sqlalchemy import select
from temporalio.testing import ActivityEnvironment

from activities.contracts import PointsRequest
from activities.loyalty import LoyaltyActivities
from domain.customers import service as customers
from domain.customers.models import Customer
from domain.db import transaction, utcnow
from domain.events import service as events
from domain.events.schemas import IdentifyCall, TrackCall
from domain.journeys.models import Enrollment, Journey, JourneyVersion
from domain.loyalty import maintenance
from domain.loyalty import service as loyalty
from domain.loyalty.earner import EventCursor, earn_once
from domain.loyalty.schemas import POINTS_ADJUSTED, RedeemIn
from tests.conftest import wait_for
from tests.email.helpers import done_or_waiting_on_a_lock
from tests.loyalty.helpers import emitted, entries, set_program

BONUS = 100


async def _profile(sessions, call) -> int:
    async with transaction(sessions) as session:
        await events.ingest(session, [call], source_key_id=None)
    async with sessions() as session:
        key = Customer.user_id == call.userId if call.userId else Customer.anonymous_id == call.anonymousId
        return await session.scalar(select(Customer.id).where(key))


async def _journey(sessions, reentry: str) -> None:
    entry = {"id": "start", "type": "entry", "event": "Signed Up", "reentry": reentry, "next": "bonus"}
    if reentry == "once_per_key":
        entry["entry_key"] = "plan"
    bonus = {"id": "bonus", "type": "award_points", "points": BONUS, "reason": "welcome bonus"}
    async with transaction(sessions) as session:
        session.add(Journey(id="welcome", name="welcome", status="published", draft={}, published_version=1))
        await session.flush()
        session.add(
            JourneyVersion(
                journey_id="welcome",
                version=1,
                definition={"nodes": [entry, bonus]},
                trigger_event="Signed Up",
            )
        )


async def _enroll(sessions, customer_id: int, *, minutes_ago: int, done_after: int | None = None, key=None):
    """An enrollment in the welcome journey, still inside or finished ``done_after`` minutes in."""
    workflow_id = f"journey/welcome/customer/{customer_id}" + (f"/{key}" if key else "")
    entered = utcnow() - timedelta(minutes=minutes_ago)
    async with transaction(sessions) as session:
        session.add(
            Enrollment(
                workflow_id=workflow_id,
                journey_id="welcome",
                version=1,
                customer_id=customer_id,
                status="active" if done_after is None else "completed",
                entered_at=entered,
                completed_at=None if done_after is None else entered + timedelta(minutes=done_after),
            )
        )
    return workflow_id


def _step(workflow_id: str, customer_id: int, at=None) -> PointsRequest:
    return PointsRequest(
        f"{workflow_id}/7/bonus/1",
        customer_id,
        BONUS,
        journey_id="welcome",
        node_id="bonus",
        occurred_at=at and at.isoformat(),
    )


async def _award(sessions, workflow_id: str, customer_id: int, at=None):
    """The journey's bonus step, run as the worker runs it for that enrollment."""
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, workflow_id=workflow_id)
    return await env.run(LoyaltyActivities(sessions).award_points, _step(workflow_id, customer_id, at))


async def _buy(sessions, call) -> None:
    """An order, earned from by the worker's earning pass."""
    await _profile(sessions, call)
    await earn_once(sessions, EventCursor(), utcnow(), 1000)


async def _merge(sessions) -> None:
    await _profile(sessions, IdentifyCall(userId="kim", anonymousId="v-1", traits={}))


async def _state(sessions, customer_id: int):
    async with sessions() as session:
        account = await loyalty.account(session, customer_id, utcnow(), expiring_within_days=400)
        audit = await loyalty.audit(session, customer_id)
    assert audit.consistent, audit.problems
    return account


def _order(who: dict, revenue: int) -> TrackCall:
    return TrackCall(**who, event="Order Completed", properties={"revenue": revenue})


KIM, VISITOR = {"userId": "kim"}, {"anonymousId": "v-1"}


@pytest.fixture
async def people(sessions):
    await set_program(sessions, since=utcnow() - timedelta(days=1))
    kim = await _profile(sessions, IdentifyCall(userId="kim", traits={}))
    visitor = await _profile(sessions, TrackCall(anonymousId="v-1", event="Viewed"))
    return kim, visitor


async def test_each_profiles_welcome_bonus_counts_once_and_both_purchases_stay(sessions, people):
    kim, visitor = people
    await _journey(sessions, "once")
    theirs = await _enroll(sessions, visitor, minutes_ago=60, done_after=1)
    ours = await _enroll(sessions, kim, minutes_ago=30, done_after=1)
    await _award(sessions, theirs, visitor)
    await _award(sessions, ours, kim)
    await _buy(sessions, _order(KIM, 300))
    await _buy(sessions, _order(VISITOR, 40))

    await _merge(sessions)

    account = await _state(sessions, kim)
    assert account.balance == BONUS + 300 + 40  # was 2 * BONUS + 340
    assert account.tier_points == BONUS + 300  # her own earnings: the bonus once
    assert account.lifetime_earned == BONUS + 300
    reversal = [e for e in await entries(sessions, kim) if e.points < 0]
    assert [(e.kind, e.points, e.source) for e in reversal] == [("adjust", -BONUS, "merge")]
    assert f"profile {visitor}, merged into this one" in reversal[0].reason
    assert reversal[0].meta["merged_from"] == visitor
    assert reversal[0].meta["written_off"] == 0
    adjusted = [e.properties["points"] for e in await emitted(sessions, POINTS_ADJUSTED)]
    assert -BONUS in adjusted  # journeys and the customer's history see it


@pytest.mark.parametrize(
    "reentry, visitor_done_after, key, reversed_",
    [
        ("always", 1, None, False),
        ("after_exit", 1, None, False),  # the visitor left before Kim entered: a legitimate re-entry
        ("after_exit", 45, None, True),  # both inside at once: the policy would have refused one
        ("once_per_key", 1, ("basic", "pro"), False),
        ("once_per_key", 1, ("pro", "pro"), True),
    ],
)
async def test_only_what_the_reentry_policy_admits_once_is_reversed(
    sessions, people, reentry, visitor_done_after, key, reversed_
):
    kim, visitor = people
    await _journey(sessions, reentry)
    theirs = await _enroll(
        sessions, visitor, minutes_ago=60, done_after=visitor_done_after, key=key and key[0]
    )
    ours = await _enroll(sessions, kim, minutes_ago=30, done_after=1, key=key and key[1])
    await _award(sessions, theirs, visitor)
    await _award(sessions, ours, kim)

    await _merge(sessions)

    assert (await _state(sessions, kim)).balance == (BONUS if reversed_ else 2 * BONUS)


async def test_a_bonus_the_visitor_spent_comes_out_of_the_customers_own_copy_never_her_purchases(
    sessions, people
):
    kim, visitor = people
    await _journey(sessions, "once")
    theirs = await _enroll(sessions, visitor, minutes_ago=60, done_after=1)
    ours = await _enroll(sessions, kim, minutes_ago=30, done_after=1)
    await _award(sessions, theirs, visitor)
    await _buy(sessions, _order(VISITOR, 40))
    async with transaction(sessions) as session:  # oldest first: 70 of the visitor's bonus
        await loyalty.redeem(session, visitor, "coffee", RedeemIn(points=70, reason="coffee"), utcnow())
    await _award(sessions, ours, kim)
    await _buy(sessions, _order(KIM, 300))

    await _merge(sessions)

    account = await _state(sessions, kim)
    # One bonus, of which 70 was spent, and both purchases: 30 + 300 + 40.
    assert account.balance == 370
    assert sorted(lot.remaining for lot in account.expiring) == [30, 40, 300]
    taken = [
        (e.points, e.meta["recovered"], e.meta["written_off"])
        for e in await entries(sessions, kim)
        if e.points < 0
    ]
    assert taken == [(-30, 100, 0), (-70, 100, 0)]
    async with transaction(sessions) as session:
        with pytest.raises(loyalty.InsufficientPoints):
            await loyalty.redeem(session, kim, "too-much", RedeemIn(points=371, reason="tv"), utcnow())
    async with transaction(sessions) as session:
        spent = await loyalty.redeem(session, kim, "all", RedeemIn(points=370, reason="tv"), utcnow())
    assert spent.balance == 0
    assert (await _state(sessions, kim)).balance == 0


async def test_a_bonus_spent_on_both_profiles_is_written_off_and_the_balance_stays_above_zero(
    sessions, people
):
    kim, visitor = people
    await _journey(sessions, "once")
    theirs = await _enroll(sessions, visitor, minutes_ago=60, done_after=1)
    ours = await _enroll(sessions, kim, minutes_ago=30, done_after=1)
    for workflow_id, who, customer_id in ((theirs, VISITOR, visitor), (ours, KIM, kim)):
        await _award(sessions, workflow_id, customer_id)
        async with transaction(sessions) as session:
            await loyalty.redeem(session, customer_id, "r", RedeemIn(points=BONUS, reason="gift"), utcnow())
        await _buy(sessions, _order(who, 40))

    await _merge(sessions)

    account = await _state(sessions, kim)
    assert account.balance == 80  # the purchases; nothing is left of either bonus to take back


async def test_a_bonus_that_expired_on_the_visitor_is_not_taken_from_the_customers_own(sessions, people):
    kim, visitor = people
    await _journey(sessions, "once")
    theirs = await _enroll(sessions, visitor, minutes_ago=60, done_after=1)
    ours = await _enroll(sessions, kim, minutes_ago=30, done_after=1)
    await _award(sessions, theirs, visitor, at=utcnow() - timedelta(days=400))  # expires after a year
    async with transaction(sessions) as session:
        assert await maintenance.expire_due(session, utcnow(), 100) == 1
    await _award(sessions, ours, kim)

    await _merge(sessions)

    account = await _state(sessions, kim)
    assert account.balance == BONUS  # the visitor never had the use of theirs: Kim's stays whole
    assert [e for e in await entries(sessions, kim) if e.points < 0] == []


@pytest.mark.parametrize("goes_on", ["visitor's", "Kim's"])
async def test_the_enrollment_that_goes_on_does_not_give_the_bonus_again_after_the_merge(
    sessions, people, goes_on
):
    """Both were inside the journey; the merge ends the later-entered. The one that goes on had not
    reached the bonus step the other had already given: when it does, it gives nothing."""
    kim, visitor = people
    await _journey(sessions, "once")
    visitor_first = goes_on == "visitor's"
    theirs = await _enroll(sessions, visitor, minutes_ago=60 if visitor_first else 30)
    ours = await _enroll(sessions, kim, minutes_ago=30 if visitor_first else 60)
    ended, kept = (ours, theirs) if visitor_first else (theirs, ours)
    await _award(sessions, ended, kim if visitor_first else visitor)

    await _merge(sessions)
    late = await _award(sessions, kept, visitor if visitor_first else kim)
    again = await _award(sessions, kept, visitor if visitor_first else kim)  # retried: still nothing

    assert (late.replayed, late.balance, again.replayed, again.balance) == (True, BONUS, True, BONUS)
    assert (await _state(sessions, kim)).balance == BONUS


async def test_awards_retried_after_the_merge_move_nothing(sessions, people):
    kim, visitor = people
    await _journey(sessions, "once")
    theirs = await _enroll(sessions, visitor, minutes_ago=60, done_after=1)
    ours = await _enroll(sessions, kim, minutes_ago=30, done_after=1)
    await _award(sessions, theirs, visitor)
    await _award(sessions, ours, kim)
    await _merge(sessions)

    for workflow_id, customer_id in ((theirs, visitor), (ours, kim)):  # replies lost, Temporal retries
        assert (await _award(sessions, workflow_id, customer_id)).replayed

    assert (await _state(sessions, kim)).balance == BONUS


async def test_an_award_racing_the_merge_counts_once_whichever_commits_first(sessions):
    """The visitor's bonus step and the login that merges them run at once, in many rounds: whatever
    order the database gives them, the person ends with one bonus."""
    await set_program(sessions)
    await _journey(sessions, "once")
    for i in range(6):
        kim = await _profile(sessions, IdentifyCall(userId=f"kim-{i}", traits={}))
        visitor = await _profile(sessions, TrackCall(anonymousId=f"v-{i}", event="Viewed"))
        theirs = await _enroll(sessions, visitor, minutes_ago=60)
        ours = await _enroll(sessions, kim, minutes_ago=30, done_after=1)
        await _award(sessions, ours, kim)
        login = _profile(sessions, IdentifyCall(userId=f"kim-{i}", anonymousId=f"v-{i}", traits={}))
        await asyncio.gather(_award(sessions, theirs, visitor), login)
        assert (await _state(sessions, kim)).balance == BONUS, f"round {i}"


async def test_a_merge_waits_for_an_award_in_flight_and_then_reverses_it(engine, sessions, people):
    """PostgreSQL (SQLite runs one write transaction at a time): the award's transaction holds the
    visitor; the merge waits for it, then sees the award and takes it back."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite runs one write transaction at a time")
    kim, visitor = people
    await _journey(sessions, "once")
    theirs = await _enroll(sessions, visitor, minutes_ago=60)
    ours = await _enroll(sessions, kim, minutes_ago=30, done_after=1)
    await _award(sessions, ours, kim)

    async with transaction(sessions) as session:  # as the activity does: hold the profile, award
        await customers.hold_current(session, [visitor])
        await loyalty.award(
            session, visitor, _step(theirs, visitor).idempotency_key, BONUS, "welcome", utcnow()
        )
        merge = asyncio.create_task(_merge(sessions))
        await wait_for(lambda: done_or_waiting_on_a_lock(merge, engine))
        assert not merge.done()
    await merge

    assert (await _state(sessions, kim)).balance == BONUS


async def test_an_award_started_while_the_merge_commits_waits_and_gives_nothing(engine, sessions, people):
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite runs one write transaction at a time")
    kim, visitor = people
    await _journey(sessions, "once")
    theirs = await _enroll(sessions, visitor, minutes_ago=60)
    ours = await _enroll(sessions, kim, minutes_ago=30, done_after=1)
    await _award(sessions, ours, kim)

    async with transaction(sessions) as session:
        await customers.merge(session, source_id=visitor, target_id=kim)
        award = asyncio.create_task(_award(sessions, theirs, visitor))
        await wait_for(lambda: done_or_waiting_on_a_lock(award, engine))
        assert not award.done()
    result = await award

    assert (result.replayed, result.balance) == (True, BONUS)
    assert (await _state(sessions, kim)).balance == BONUS
