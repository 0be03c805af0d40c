"""Segments on subscription state and loyalty: membership follows unsubscribes, bounces, points and tiers."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from domain.customers import service as customers
from domain.customers.models import Customer
from domain.db import transaction, utcnow
from domain.events import service as events
from domain.events.models import Event
from domain.events.schemas import IdentifyCall
from domain.loyalty import service as loyalty
from domain.loyalty.schemas import ProgramConfig, RedeemIn, Tier
from domain.segments import compiler, repository
from domain.segments import rules as r
from domain.segments import service as segments
from domain.segments.evaluate import evaluate
from domain.segments.models import SegmentMembership
from domain.segments.schemas import PreviewIn, SegmentIn
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


async def _erase(sessions, customer_id: int) -> None:
    async with transaction(sessions) as session:
        await customers.erase(session, customer_id, by_key_id=None, reason="asked")


async def test_a_new_profile_at_an_erased_persons_bounced_address_is_not_reachable_in_segments(sessions):
    async with transaction(sessions) as session:
        await subscriptions.create_group(session, GroupIn(id="newsletter", name="Newsletter"))
    ids = await _people(sessions, "ada", "bob")
    async with transaction(sessions) as session:
        batch = FeedbackBatch.model_validate({"events": [{"type": "bounce", "email": "ada@example.com"}]})
        await subscriptions.record_feedback(session, batch)
    await _erase(sessions, ids["ada"])  # the list keeps only the digest of ada@example.com
    await _create(sessions, "readers", {"subscription": "newsletter"})
    await _create(sessions, "mailable", {"subscription": "*"})
    refresher = SegmentRefresher(sessions)
    await refresher.refresh_once()

    # Someone signs up later with the address: the incremental pass reads their identify call.
    async with transaction(sessions) as session:
        await events.ingest(
            session,
            [IdentifyCall(userId="newcomer", traits={"email": "ada@example.com"})],
            source_key_id=None,
        )
    await refresher.refresh_once()
    async with sessions() as session:
        newcomer = await session.scalar(select(Customer.id).where(Customer.user_id == "newcomer"))
        blocked = await subscriptions.blocked(
            session, {newcomer: "ada@example.com"}, "marketing", "newsletter"
        )
        live = [await segments.matches(session, s, newcomer) for s in ("readers", "mailable")]
    assert blocked == {newcomer: "address suppressed (bounced)"}  # the send-time check
    assert live == [False, False]  # the per-customer evaluator (journey branches and entry filters)
    assert await _members(sessions, "readers") == await _members(sessions, "mailable") == {"bob"}
    # And a full evaluation (the SQL compiler over every customer) says the same.
    for segment_id in ("readers", "mailable"):
        async with transaction(sessions) as session:
            await segments.rebuild(session, segment_id)
    assert await _members(sessions, "readers") == await _members(sessions, "mailable") == {"bob"}


async def test_every_way_a_profile_gets_an_erased_address_keeps_it_unreachable(sessions):
    """Ingestion's identify (a new address, and the same again), a visitor's merge into a known
    customer, and a journey's update_trait step each set the address the erased person had."""
    ids = await _people(sessions, "ada", "bob", "cy")
    async with transaction(sessions) as session:
        batch = FeedbackBatch.model_validate({"events": [{"type": "complaint", "email": "ada@example.com"}]})
        await subscriptions.record_feedback(session, batch)
    await _erase(sessions, ids["ada"])
    async with transaction(sessions) as session:
        calls = [
            IdentifyCall(userId="bob", traits={"email": "ada@example.com"}),
            IdentifyCall(userId="bob", traits={"email": "ada@example.com"}),
            IdentifyCall(anonymousId="visitor", traits={"email": "ada@example.com"}),
        ]
        await events.ingest(session, calls, source_key_id=None)
        await session.execute(
            update(Customer).where(Customer.user_id == "cy").values(email=None, email_sha256=None)
        )
    async with transaction(sessions) as session:
        await events.ingest(session, [IdentifyCall(userId="cy", anonymousId="visitor")], source_key_id=None)
    async with transaction(sessions) as session:
        await events.ingest(session, [IdentifyCall(userId="dee", traits={"plan": "pro"})], source_key_id=None)
    async with transaction(sessions) as session:
        dee = await session.scalar(select(Customer.id).where(Customer.user_id == "dee"))
        await customers.update_traits(session, dee, {"email": "Ada@Example.com"})
    async with sessions() as session:
        rows = dict((await session.execute(select(Customer.user_id, Customer.email))).all())
        rule = r.parse({"subscription": "*"})
        now = utcnow()
        erased = await repository.erased_address_customers(session)
        full = await repository.matching_ids(
            session, compiler.members_query(rule, session.bind.dialect.name, now, erased=erased)
        )
        reachable = {
            user
            for user, cid in (await session.execute(select(Customer.user_id, Customer.id))).all()
            if evaluate(rule, await repository.customer_facts(session, cid, set()), now)
        }
    assert rows == {"bob": "ada@example.com", "cy": "ada@example.com", "dee": "ada@example.com"}
    assert full == set() and reachable == set()


async def test_a_preview_leaves_out_a_profile_at_an_erased_persons_address_with_no_segment_saved(sessions):
    """A preview's rule is nobody's segment: it reads the erased addresses itself."""
    ids = await _people(sessions, "ada", "bob")
    async with transaction(sessions) as session:
        batch = FeedbackBatch.model_validate({"events": [{"type": "bounce", "email": "ada@example.com"}]})
        await subscriptions.record_feedback(session, batch)
    await _erase(sessions, ids["ada"])
    async with transaction(sessions) as session:
        calls = [IdentifyCall(userId="newcomer", traits={"email": "ada@example.com"})]
        await events.ingest(session, calls, source_key_id=None)
    async with sessions() as session:
        preview = await segments.preview(session, PreviewIn(rule={"subscription": "*"}))
    assert preview.count == 1
    assert [c.user_id for c in preview.sample] == ["bob"]


async def test_a_preview_of_a_tier_rule_with_no_segment_saved_reads_the_programmes_first_tier(sessions):
    """A preview's rule is nobody's segment: it reads the tier of customers without an account itself."""
    await _people(sessions, "ada", "bob")
    tiers = [Tier(name="basic", threshold=0), Tier(name="gold", threshold=1000)]
    async with transaction(sessions) as session:
        await loyalty.put_program(session, ProgramConfig(tiers=tiers), utcnow())
    async with sessions() as session:
        basic = await segments.preview(session, PreviewIn(rule={"loyalty_tier": "basic"}))
        gold = await segments.preview(session, PreviewIn(rule={"loyalty_tier": "gold"}))
    assert (basic.count, sorted(c.user_id for c in basic.sample)) == (2, ["ada", "bob"])
    assert gold.count == 0
