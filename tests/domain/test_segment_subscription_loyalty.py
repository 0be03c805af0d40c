"""Segments on subscription state and loyalty: membership follows unsubscribes, bounces, points and tiers."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from domain.customers.models import Customer
from domain.db import transaction, utcnow
from domain.events import service as events
from domain.events.models import Event
from domain.events.schemas import IdentifyCall
from domain.loyalty import service as loyalty
from domain.loyalty.schemas import ProgramConfig, RedeemIn, Tier
from domain.segments import service as segments
from domain.segments.models import SegmentMembership
from domain.segments.schemas import SegmentIn
from domain.subscriptions import service as subscriptions
from domain.subscriptions.schemas import FeedbackBatch, GroupIn
from runtime.segment_refresher import SegmentRefresher


async def _create(sessions, segment_id, rule):
    async with transaction(sessions) as session:
        await segments.create(session, SegmentIn(id=segment_id, name=segment_id, rule=rule))


async def _members(sessions, segment_id) -> set[str]:
    async with sessions() as session:
        rows = await session.execute(
            select(Customer.user_id)
            .join(SegmentMembership, SegmentMembership.customer_id == Customer.id)
            .where(SegmentMembership.segment_id == segment_id, SegmentMembership.exited_at.is_(None))
        )
        return {row[0] for row in rows}


async def _people(sessions, *users: str) -> dict[str, int]:
    async with transaction(sessions) as session:
        calls = [IdentifyCall(userId=u, traits={"email": f"{u}@example.com"}) for u in users]
        await events.ingest(session, calls, source_key_id=None)
        # Known for a day: the refresher re-evaluates brand-new customers anyway, and these tests must
        # show that the change itself (its event) is what moves them.
        await session.execute(update(Customer).values(created_at=utcnow() - timedelta(days=1)))
    async with sessions() as session:
        rows = await session.execute(select(Customer.user_id, Customer.id).where(Customer.user_id.in_(users)))
        return dict(rows.all())


async def _segment_events(sessions, name: str, segment_id: str) -> list[int]:
    async with sessions() as session:
        rows = await session.execute(select(Event.customer_id, Event.properties).where(Event.name == name))
        return sorted(c for c, props in rows if props["segment_id"] == segment_id)


async def test_unsubscribing_or_bouncing_leaves_a_newsletter_segment_and_resubscribing_returns(sessions):
    async with transaction(sessions) as session:
        await subscriptions.create_group(session, GroupIn(id="newsletter", name="Newsletter"))
        await subscriptions.create_group(session, GroupIn(id="offers", name="Offers", opt_in=True))
    ids = await _people(sessions, "ada", "bob", "cy")
    await _create(sessions, "readers", {"subscription": "newsletter"})
    await _create(sessions, "offer-takers", {"subscription": "offers"})
    await _create(sessions, "mailable", {"subscription": "*"})
    refresher = SegmentRefresher(sessions)
    await refresher.refresh_once()
    # Opt-out group: everyone with an address; opt-in group: nobody until they opt in.
    assert await _members(sessions, "readers") == {"ada", "bob", "cy"}
    assert await _members(sessions, "offer-takers") == set()

    async with transaction(sessions) as session:
        await subscriptions.unsubscribe(session, ids["ada"], "newsletter", "one_click")
        await subscriptions.save_preferences(session, ids["cy"], {"newsletter", "offers"}, False)
    await refresher.refresh_once()
    assert await _members(sessions, "readers") == {"bob", "cy"}
    assert await _members(sessions, "offer-takers") == {"cy"}
    assert await _segment_events(sessions, "Segment Exited", "readers") == [ids["ada"]]

    # A complaint suppresses the address: no marketing at all, whatever the choices.
    async with transaction(sessions) as session:
        batch = FeedbackBatch.model_validate({"events": [{"type": "complaint", "email": "cy@example.com"}]})
        await subscriptions.record_feedback(session, batch)
    await refresher.refresh_once()
    assert await _members(sessions, "readers") == {"bob"}
    assert await _members(sessions, "offer-takers") == set()
    assert await _members(sessions, "mailable") == {"ada", "bob"}

    # The segment agrees with what the send-time check would do for each of them.
    async with sessions() as session:
        blocked = await subscriptions.blocked(
            session, {i: f"{u}@example.com" for u, i in ids.items()}, "marketing", "newsletter"
        )
    assert {u for u, i in ids.items() if i not in blocked} == await _members(sessions, "readers")

    async with transaction(sessions) as session:
        await subscriptions.save_preferences(session, ids["ada"], {"newsletter"}, False)
    await refresher.refresh_once()
    assert await _members(sessions, "readers") == {"ada", "bob"}


async def test_a_member_who_reaches_gold_enters_gold_members_and_spending_moves_balance_segments(sessions):
    now = utcnow()
    tiers = [
        Tier(name="member", threshold=0),
        Tier(name="silver", threshold=100),
        Tier(name="gold", threshold=500),
    ]
    async with transaction(sessions) as session:
        await loyalty.put_program(session, ProgramConfig(tiers=tiers), now)
    ids = await _people(sessions, "ada", "bob")
    await _create(sessions, "gold-members", {"loyalty_tier": "gold"})
    await _create(sessions, "base-tier", {"loyalty_tier": ["member"]})
    await _create(sessions, "rich", {"loyalty_balance": {"gte": 500}})
    refresher = SegmentRefresher(sessions)
    await refresher.refresh_once()
    # Without an account: the lowest tier and no points.
    assert await _members(sessions, "base-tier") == {"ada", "bob"}
    assert await _members(sessions, "gold-members") == await _members(sessions, "rich") == set()

    async with transaction(sessions) as session:
        await loyalty.award(session, ids["ada"], "welcome", 300, "welcome bonus", now)
        await loyalty.award(session, ids["bob"], "welcome", 50, "welcome bonus", now)
    await refresher.refresh_once()
    assert await _members(sessions, "gold-members") == set()
    assert await _members(sessions, "base-tier") == {"bob"}  # ada is silver now

    async with transaction(sessions) as session:
        await loyalty.award(session, ids["ada"], "order-1", 300, "order", now)
    await refresher.refresh_once()
    assert await _members(sessions, "gold-members") == {"ada"}
    assert await _members(sessions, "rich") == {"ada"}
    assert await _segment_events(sessions, "Segment Entered", "gold-members") == [ids["ada"]]

    async with transaction(sessions) as session:
        await loyalty.redeem(session, ids["ada"], "spend-1", RedeemIn(points=200, reason="voucher"), now)
    await refresher.refresh_once()
    assert await _members(sessions, "rich") == set()  # 400 points left
    assert await _members(sessions, "gold-members") == {"ada"}  # spending does not lower the tier
    async with sessions() as session:
        assert await segments.matches(session, "gold-members", ids["ada"])
        assert not await segments.matches(session, "rich", ids["ada"])
        assert await segments.matches(session, "base-tier", ids["bob"])


async def test_a_new_first_loyalty_tier_moves_customers_without_an_account_out_of_the_old_ones_segment(
    sessions,
):
    ids = await _people(sessions, "ada", "bob")
    await _create(sessions, "entry-tier", {"loyalty_tier": "member"})  # the first tier, by default
    await _create(
        sessions, "member-readers", {"all": [{"segment": "entry-tier"}, {"trait": "email", "op": "exists"}]}
    )
    assert (
        await _members(sessions, "entry-tier") == await _members(sessions, "member-readers") == {"ada", "bob"}
    )

    # The admin puts a new first tier below "member": nobody has an account, so everyone is "basic" now.
    tiers = [Tier(name="basic", threshold=0), Tier(name="member", threshold=1000)]
    async with transaction(sessions) as session:
        await loyalty.put_program(session, ProgramConfig(tiers=tiers), utcnow())
    assert await _members(sessions, "entry-tier") == await _members(sessions, "member-readers") == set()
    everyone = sorted(ids.values())
    assert await _segment_events(sessions, "Segment Exited", "entry-tier") == everyone
    assert await _segment_events(sessions, "Segment Exited", "member-readers") == everyone
    await _create(sessions, "basic-tier", {"loyalty_tier": "basic"})
    assert await _members(sessions, "basic-tier") == {"ada", "bob"}
    async with sessions() as session:  # stored membership agrees with the live decision
        assert not await segments.matches(session, "entry-tier", ids["ada"])

    # Replacing the programme with the same first tier moves nobody and records nothing.
    async with transaction(sessions) as session:
        await loyalty.put_program(
            session, ProgramConfig(tiers=[*tiers, Tier(name="gold", threshold=5000)]), utcnow()
        )
    assert await _members(sessions, "basic-tier") == {"ada", "bob"}
    assert await _segment_events(sessions, "Segment Exited", "basic-tier") == []
