"""Stored membership: incremental refresh from new events, window edges, trait changes, birthdays."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, insert, select, update

from domain.customers import service as customers
from domain.customers.models import Customer
from domain.db import transaction, utcnow
from domain.events import service as events
from domain.events.models import Event
from domain.events.schemas import IdentifyCall, TrackCall
from domain.segments import service as segments
from domain.segments.models import SegmentMembership
from domain.segments.schemas import PreviewIn, SegmentIn, SegmentUpdate
from runtime.segment_refresher import SegmentRefresher
from tests.conftest import wait_for

RECENT_BUYERS = {"event": "Order Completed", "within_days": 30}


async def _create(sessions, segment_id, rule, now=None):
    async with transaction(sessions) as session:
        return await segments.create(session, SegmentIn(id=segment_id, name=segment_id, rule=rule), now=now)


async def _members(sessions, segment_id) -> set[str]:
    async with sessions() as session:
        rows = await session.execute(
            select(Customer.user_id)
            .join(SegmentMembership, SegmentMembership.customer_id == Customer.id)
            .where(SegmentMembership.segment_id == segment_id, SegmentMembership.exited_at.is_(None))
        )
        return {row[0] for row in rows}


async def _track(sessions, user, name, at=None, **properties):
    async with transaction(sessions) as session:
        call = TrackCall(userId=user, event=name, properties=properties, timestamp=at)
        await events.ingest(session, [call], source_key_id=None)


async def _identify(sessions, user, **traits):
    async with transaction(sessions) as session:
        await events.ingest(session, [IdentifyCall(userId=user, traits=traits)], source_key_id=None)


async def _customers(sessions, count: int) -> None:
    now = utcnow()
    async with transaction(sessions) as session:
        await session.execute(
            insert(Customer),
            [
                {
                    "user_id": f"old-{i}",
                    "traits": {},
                    "first_seen_at": now,
                    "last_seen_at": now,
                    "created_at": now - timedelta(days=1),
                }
                for i in range(count)
            ],
        )


async def test_a_customer_who_performs_the_event_is_a_member_within_seconds(sessions, monkeypatch):
    await _customers(sessions, 200)
    await _create(sessions, "recent-buyers", RECENT_BUYERS)
    refresher = SegmentRefresher(sessions, poll_seconds=0.05)
    await refresher.refresh_once()  # history up to now is already reflected by the create

    scopes: list[set[int]] = []
    original = segments.reevaluate

    async def recording(session, segment_id, *, may_enter, may_exit, **kwargs):
        for scope in (may_enter, may_exit):  # ids, or the SELECT that finds them in the pass's events
            scopes.append(scope if isinstance(scope, set) else set((await session.scalars(scope)).all()))
        return await original(session, segment_id, may_enter=may_enter, may_exit=may_exit, **kwargs)

    async def no_rebuild(*_args, **_kwargs):
        raise AssertionError("a new event must not rebuild the segment")

    monkeypatch.setattr(segments, "reevaluate", recording)
    monkeypatch.setattr(segments, "rebuild", no_rebuild)
    stop = asyncio.Event()
    task = asyncio.create_task(refresher.run(stop))
    try:
        await _track(sessions, "ada", "Order Completed", revenue=30)
        started = asyncio.get_running_loop().time()
        await wait_for(lambda: _members_has(sessions, "ada"), within=5)
        assert asyncio.get_running_loop().time() - started < 5
    finally:
        stop.set()
        await task
    async with sessions() as session:
        ada = await session.scalar(select(Customer.id).where(Customer.user_id == "ada"))
    assert scopes and all(scope <= {ada} for scope in scopes)  # only ada was evaluated
    async with sessions() as session:
        entered = await session.scalar(select(Event.properties).where(Event.name == "Segment Entered"))
    assert entered == {"segment_id": "recent-buyers", "segment_version": 1}


async def test_an_event_committed_after_later_ones_is_still_seen(sessions):
    # Event ids come from a sequence: a transaction that took id 99 may commit after the one that took
    # 100, when a pass has already moved its cursor past 99. The pass remembers the gap and looks again.
    await _customers(sessions, 2)
    await _create(sessions, "recent-buyers", RECENT_BUYERS)
    refresher = SegmentRefresher(sessions)
    await refresher.refresh_once()
    now = utcnow()
    order = {"type": "track", "name": "Order Completed", "properties": {}, "traits": {}, "context": {}}

    async def store(event_id: int, user_id: str) -> None:
        async with transaction(sessions) as session:
            customer = await session.scalar(select(Customer.id).where(Customer.user_id == user_id))
            row = {"id": event_id, "message_id": f"m{event_id}", "customer_id": customer, **order}
            await session.execute(insert(Event).values(**row, timestamp=now, received_at=now))

    await store(100, "old-0")
    await refresher.refresh_once()
    assert await _members(sessions, "recent-buyers") == {"old-0"}
    await store(99, "old-1")  # the late one
    await refresher.refresh_once()
    assert await _members(sessions, "recent-buyers") == {"old-0", "old-1"}


async def _members_has(sessions, user):
    return user in await _members(sessions, "recent-buyers")


async def test_trait_changes_move_customers_in_and_out(sessions):
    await _create(sessions, "berliners", {"trait": "city", "op": "equals", "value": "Berlin"})
    refresher = SegmentRefresher(sessions)
    await _identify(sessions, "ada", city="Berlin")
    await refresher.refresh_once()
    assert await _members(sessions, "berliners") == {"ada"}
    await _identify(sessions, "ada", city="Paris")
    await refresher.refresh_once()
    assert await _members(sessions, "berliners") == set()
    async with sessions() as session:
        names = (
            await session.scalars(select(Event.name).where(Event.name.like("Segment %")).order_by(Event.id))
        ).all()
    assert names == ["Segment Entered", "Segment Exited"]
    assert await refresher.refresh_once() > 0 and await _members(sessions, "berliners") == set()


async def _segment_events_of(sessions, user) -> list[str]:
    async with sessions() as session:
        rows = await session.scalars(
            select(Event.name)
            .join(Customer, Customer.id == Event.customer_id)
            .where(Customer.user_id == user, Event.name.like("Segment %"))
            .order_by(Event.id)
        )
        return list(rows.all())


async def _age_profiles(sessions) -> None:
    """Make every profile a day old: the refresher evaluates brand-new customers fully anyway."""
    async with transaction(sessions) as session:
        await session.execute(update(Customer).values(created_at=utcnow() - timedelta(days=1)))


async def test_a_merged_visitors_history_counts_on_the_next_pass(sessions):
    await _create(sessions, "repeat-buyers", {"event": "Order Completed", "times": {"at_least": 2}})
    refresher = SegmentRefresher(sessions)
    await _track(sessions, "ada", "Order Completed")
    async with transaction(sessions) as session:
        call = TrackCall(anonymousId="visitor-7", event="Order Completed")
        await events.ingest(session, [call], source_key_id=None)
    await refresher.refresh_once()
    assert await _members(sessions, "repeat-buyers") == set()  # one order each, as two profiles
    await _age_profiles(sessions)

    # The visitor logs in: its earlier order (already behind the refresher's cursor) becomes Ada's.
    async with transaction(sessions) as session:
        login = IdentifyCall(userId="ada", anonymousId="visitor-7")
        await events.ingest(session, [login], source_key_id=None)
    await refresher.refresh_once()
    assert await _members(sessions, "repeat-buyers") == {"ada"}
    assert await _segment_events_of(sessions, "ada") == ["Segment Entered"]


async def _segment_history(sessions, user) -> list[tuple[str, str]]:
    """(event, segment) of the customer's Segment Entered / Exited events, in order."""
    async with sessions() as session:
        rows = await session.execute(
            select(Event.name, Event.properties)
            .join(Customer, Customer.id == Event.customer_id)
            .where(Customer.user_id == user, Event.name.like("Segment %"))
            .order_by(Event.id)
        )
        return [(name, properties["segment_id"]) for name, properties in rows]


async def test_a_merged_visitors_stays_go_with_the_visitor(sessions):
    """A visitor's stays become the customer's on the merge, as its events (their Segment Entered
    among them) do: a person the merged profile no longer matches leaves the segment with a Segment
    Exited (exit_when and goals hear it), and one it still matches stays in since the visitor came."""
    await _create(
        sessions, "browsing", {"all": [{"event": "Product Viewed"}, {"not": {"event": "Order Completed"}}]}
    )
    await _create(sessions, "viewers", {"event": "Product Viewed"})
    refresher = SegmentRefresher(sessions)
    await _track(sessions, "ada", "Order Completed")
    async with transaction(sessions) as session:
        call = TrackCall(anonymousId="visitor-8", event="Product Viewed")
        await events.ingest(session, [call], source_key_id=None)
    await refresher.refresh_once()
    async with sessions() as session:
        visitor = await session.scalar(select(Customer.id).where(Customer.anonymous_id == "visitor-8"))
        entered = await session.scalar(
            select(SegmentMembership.entered_at).where(
                SegmentMembership.customer_id == visitor, SegmentMembership.segment_id == "viewers"
            )
        )
    assert await _members(sessions, "browsing") == await _members(sessions, "viewers") == {None}
    await _age_profiles(sessions)

    async with transaction(sessions) as session:  # the visitor logs in: their view is Ada's now
        await events.ingest(
            session, [IdentifyCall(userId="ada", anonymousId="visitor-8")], source_key_id=None
        )
    await refresher.refresh_once()
    assert await _members(sessions, "browsing") == set()  # Ada has ordered
    assert await _members(sessions, "viewers") == {"ada"}
    # Entered as the visitor, exited as Ada; in "viewers" once, since the visitor's view.
    assert await _segment_history(sessions, "ada") == [
        ("Segment Entered", "browsing"),
        ("Segment Entered", "viewers"),
        ("Segment Exited", "browsing"),
    ]
    async with sessions() as session:
        stays = (
            await session.execute(select(SegmentMembership.segment_id, SegmentMembership.entered_at))
        ).all()
    assert ("viewers", entered) in stays


async def test_a_journeys_trait_update_moves_the_customer_on_the_next_pass(sessions):
    await _create(sessions, "pro", {"trait": "plan", "op": "equals", "value": "pro"})
    refresher = SegmentRefresher(sessions)
    await _identify(sessions, "ada", plan="free")
    await refresher.refresh_once()
    assert await _members(sessions, "pro") == set()
    await _age_profiles(sessions)

    async with transaction(sessions) as session:  # what a journey's update_trait step does: no event
        ada = await session.scalar(select(Customer.id).where(Customer.user_id == "ada"))
        assert await customers.update_traits(session, ada, {"plan": "pro"})
    assert await refresher.refresh_once() > 0
    assert await _members(sessions, "pro") == {"ada"}
    assert await _segment_events_of(sessions, "ada") == ["Segment Entered"]
    await refresher.refresh_once()  # the recheck was taken: nothing moves twice
    assert await _segment_events_of(sessions, "ada") == ["Segment Entered"]


async def test_a_window_that_expires_moves_only_the_customers_crossing_its_edge(sessions):
    t0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
    await _track(sessions, "leaving", "Order Completed", at=t0 - timedelta(days=29))
    await _track(sessions, "staying", "Order Completed", at=t0 - timedelta(days=5))
    await _track(sessions, "lapsed", "Order Completed", at=t0 - timedelta(days=90))
    await _create(sessions, "recent-buyers", RECENT_BUYERS, now=t0)
    await _create(sessions, "lapsed", {"not": RECENT_BUYERS}, now=t0)
    assert await _members(sessions, "recent-buyers") == {"leaving", "staying"}
    async with transaction(sessions) as session:
        await segments.refresh_window_edges(session, now=t0)  # first pass: full evaluation
    async with transaction(sessions) as session:
        stats = await segments.refresh_window_edges(session, now=t0 + timedelta(days=2))
    assert await _members(sessions, "recent-buyers") == {"staying"}
    assert await _members(sessions, "lapsed") == {"leaving", "lapsed"}
    assert (stats.entered, stats.exited, stats.customers) == (1, 1, 2)  # one customer, two segments
    async with transaction(sessions) as session:
        again = await segments.refresh_window_edges(session, now=t0 + timedelta(days=2, minutes=5))
    assert (again.entered, again.exited, again.customers) == (0, 0, 0)


@pytest.mark.parametrize("year", ["1990-", ""])  # birthdays stored with or without the year
async def test_birthdays_are_today_in_the_customers_own_time_zone(sessions, year):
    # 11:00 UTC on 14 May is already 15 May in Kiribati (UTC+14) but still 14 May in Berlin.
    now = datetime(2026, 5, 14, 11, tzinfo=UTC)
    await _identify(sessions, "kiri", birthday=f"{year}05-15", timezone="Pacific/Kiritimati")
    await _identify(sessions, "berlin", birthday=f"{year}05-15", timezone="Europe/Berlin")
    await _identify(sessions, "today", birthday=f"{year}05-14")
    rule = {"trait": "birthday", "op": "anniversary_today"}
    await _create(sessions, "birthday", rule, now=now)
    assert await _members(sessions, "birthday") == {"kiri", "today"}
    async with sessions() as session:
        ids = dict((await session.execute(select(Customer.user_id, Customer.id))).all())
        decided = {u for u, cid in ids.items() if await segments.matches(session, "birthday", cid, now=now)}
        preview = await segments.preview(session, PreviewIn(rule=rule), now=now)
    assert decided == {"kiri", "today"} and preview.count == 2
    # When the date changes in Berlin, the scheduled pass moves it in.
    async with transaction(sessions) as session:
        await segments.refresh_window_edges(session, now=now)
        await segments.refresh_window_edges(session, now=now + timedelta(hours=13))
    assert await _members(sessions, "birthday") == {"berlin", "kiri"}


async def test_a_trial_ending_today_is_today_in_the_customers_own_time_zone(sessions):
    """ "Ends within the next 0 days" is "ends today" where the customer lives, as for birthdays; the
    window-edge pass moves each customer when their own date changes."""
    now = datetime(2026, 5, 14, 11, tzinfo=UTC)  # 15 May in Kiribati (UTC+14), 14 May in Berlin
    await _identify(sessions, "kiri", trial_ends="2026-05-15", timezone="Pacific/Kiritimati")
    await _identify(sessions, "berlin", trial_ends="2026-05-15", timezone="Europe/Berlin")
    await _identify(sessions, "utc", trial_ends="2026-05-14")
    rule = {"trait": "trial_ends", "op": "within_next_days", "value": 0}
    await _create(sessions, "trial-ends-today", rule, now=now)
    await _create(
        sessions, "trial-ended", {"trait": "trial_ends", "op": "within_last_days", "value": 3}, now=now
    )
    assert await _members(sessions, "trial-ends-today") == {"kiri", "utc"}
    assert await _members(sessions, "trial-ended") == {"kiri", "utc"}  # not the 15th in Berlin yet
    async with sessions() as session:
        ids = dict((await session.execute(select(Customer.user_id, Customer.id))).all())
        decided = {
            u for u, c in ids.items() if await segments.matches(session, "trial-ends-today", c, now=now)
        }
    assert decided == {"kiri", "utc"}
    async with transaction(sessions) as session:
        await segments.refresh_window_edges(session, now=now)
        await segments.refresh_window_edges(session, now=now + timedelta(hours=11))  # midnight in Berlin
    assert await _members(sessions, "trial-ends-today") == {"berlin", "kiri", "utc"}
    assert await _members(sessions, "trial-ended") == {"berlin", "kiri", "utc"}
    async with transaction(sessions) as session:
        await segments.refresh_window_edges(session, now=now + timedelta(hours=13))  # midnight UTC
    assert await _members(sessions, "trial-ends-today") == {"berlin", "kiri"}


@pytest.mark.parametrize(
    "day, op",
    [
        ("1990-05-15", {"op": "anniversary_today"}),
        ("05-15", {"op": "anniversary_today"}),
        ("2026-05-15", {"op": "within_next_days", "value": 0}),
    ],
)
async def test_a_new_time_zone_moves_a_date_of_today_in_on_the_next_refresher_pass(sessions, day, op):
    now = datetime(2026, 5, 14, 11, tzinfo=UTC)  # already 15 May in Kiribati (UTC+14), not in Berlin
    await _identify(sessions, "kiri", day=day, timezone="Europe/Berlin")
    async with transaction(sessions) as session:  # a customer of long standing, not a newcomer
        await session.execute(update(Customer).values(created_at=now - timedelta(days=400)))
    await _create(sessions, "today", {"trait": "day", **op}, now=now)
    async with transaction(sessions) as session:
        await segments.refresh_from_events(session, now=now)
    assert await _members(sessions, "today") == set()
    async with transaction(sessions) as session:  # a call whose context carries the new zone
        call = TrackCall(userId="kiri", event="Page Viewed", context={"timezone": "Pacific/Kiritimati"})
        await events.ingest(session, [call], source_key_id=None)
    async with transaction(sessions) as session:
        await segments.refresh_from_events(session, now=now)
    assert await _members(sessions, "today") == {"kiri"}


async def _record_send(session, customer_id: int, key: str, how: str) -> None:
    """A welcome email claimed and recorded as sent, as the send activity of a journey or a broadcast
    batch records it."""
    from domain.broadcasts import service as broadcasts
    from domain.email import service as email

    await email.claim_message(
        session, idempotency_key=key, message_id=f"<{key}>", customer_id=customer_id, template_id="welcome"
    )
    if how == "broadcast":
        await broadcasts.record_results(session, {key: "Welcome"}, [])
    else:
        await email.finish_message(session, key, "sent", None)


async def _user_id(sessions, user: str) -> int:
    async with sessions() as session:
        return await session.scalar(select(Customer.id).where(Customer.user_id == user))


@pytest.mark.parametrize("how", ["journey", "broadcast"])
async def test_sends_reach_received_message_segments_on_the_scheduled_pass(sessions, how):
    await _identify(sessions, "ada", email="ada@example.com")
    await _create(sessions, "welcomed", {"message": "received", "template_id": "welcome"})
    async with transaction(sessions) as session:
        await segments.refresh_window_edges(session)
    async with transaction(sessions) as session:
        await _record_send(session, await _user_id(sessions, "ada"), "k1", how)
    assert await _members(sessions, "welcomed") == set()
    async with transaction(sessions) as session:
        stats = await segments.refresh_window_edges(session, now=utcnow() + timedelta(seconds=1))
    assert await _members(sessions, "welcomed") == {"ada"} and stats.customers == 1
    async with transaction(sessions) as session:  # once: the next pass has nobody new to look at
        stats = await segments.refresh_window_edges(session, now=utcnow() + timedelta(minutes=5))
    assert stats.customers == 0


@pytest.mark.parametrize("how", ["journey", "broadcast"])
async def test_a_send_that_commits_after_a_window_pass_still_enters_received_segments(
    sessions, monkeypatch, how
):
    from domain.broadcasts import repository as broadcast_repository
    from domain.email import service as email

    await _identify(sessions, "ada", email="ada@example.com")
    await _create(sessions, "welcomed", {"message": "received", "template_id": "welcome"})
    ada = await _user_id(sessions, "ada")
    t0 = utcnow()
    async with transaction(sessions) as session:
        await segments.refresh_window_edges(session, now=t0)
    # The send took its clock (sent_at) just before the pass's, but its transaction committed after the
    # pass had read the messages (it waited for a lock, or its group commit was slow).
    for module in (email, broadcast_repository):
        monkeypatch.setattr(module, "utcnow", lambda: t0 - timedelta(milliseconds=5))
    async with transaction(sessions) as session:
        await _record_send(session, ada, "k1", how)
    monkeypatch.undo()
    for i in range(1, 13):  # the scheduled passes of the next hour
        async with transaction(sessions) as session:
            await segments.refresh_window_edges(session, now=t0 + timedelta(minutes=5 * i))
    assert await _members(sessions, "welcomed") == {"ada"}


async def test_a_send_in_flight_during_a_window_pass_enters_received_segments_on_the_next_one(sessions):
    """The same race without a faked clock: a real open transaction (PostgreSQL; SQLite serialises
    writers, so a pass cannot run while a send is uncommitted)."""
    async with sessions() as probe:
        if probe.bind.dialect.name != "postgresql":
            pytest.skip("SQLite serialises writers")
    await _identify(sessions, "ada", email="ada@example.com")
    await _create(sessions, "welcomed", {"message": "received", "template_id": "welcome"})
    ada = await _user_id(sessions, "ada")
    async with transaction(sessions) as session:
        await segments.refresh_window_edges(session)
    async with sessions() as sender, sender.begin():
        await _record_send(sender, ada, "k1", "journey")  # recorded as sent, not committed yet...
        async with transaction(sessions) as session:  # ...when the scheduled pass runs
            await segments.refresh_window_edges(session)
        assert await _members(sessions, "welcomed") == set()
    async with transaction(sessions) as session:
        await segments.refresh_window_edges(session, now=utcnow() + timedelta(minutes=5))
    assert await _members(sessions, "welcomed") == {"ada"}


async def test_a_pass_evaluates_only_the_segments_its_events_concern(sessions, monkeypatch):
    await _customers(sessions, 2)
    for segment_id, rule in (
        ("buyers", {"event": "Order Completed"}),
        ("refunded", {"event": "Refund Issued"}),
        ("never-refunded", {"not": {"event": "Refund Issued"}}),
        ("berliners", {"trait": "city", "op": "equals", "value": "Berlin"}),
    ):
        await _create(sessions, segment_id, rule)
    refresher = SegmentRefresher(sessions)
    await refresher.refresh_once()
    evaluated: list[str] = []
    original = segments.reevaluate

    async def recording(session, segment_id, **kwargs):
        evaluated.append(segment_id)
        return await original(session, segment_id, **kwargs)

    monkeypatch.setattr(segments, "reevaluate", recording)

    async def one_pass() -> list[str]:
        evaluated.clear()
        await refresher.refresh_once()
        return sorted(evaluated)

    await _track(sessions, "old-0", "Order Completed")
    assert await one_pass() == ["buyers"]
    assert await _members(sessions, "buyers") == {"old-0"}
    # A new customer also goes through the segments a blank profile matches.
    await _track(sessions, "nia", "Order Completed")
    assert await one_pass() == ["buyers", "never-refunded"]
    assert "nia" in await _members(sessions, "never-refunded")
    await _identify(sessions, "old-1", city="Berlin")
    assert await one_pass() == ["berliners"]  # nia is new only once
    assert await _members(sessions, "berliners") == {"old-1"}
    assert await _members(sessions, "buyers") == {"old-0", "nia"}


async def test_a_new_customer_enters_segments_defined_by_what_they_did_not_do(sessions):
    await _create(sessions, "never-bought", {"not": {"event": "Order Completed"}})
    refresher = SegmentRefresher(sessions)
    await refresher.refresh_once()
    await _track(sessions, "newbie", "Page Viewed")  # an event the segment does not name
    await refresher.refresh_once()
    assert await _members(sessions, "never-bought") == {"newbie"}
    await _track(sessions, "newbie", "Order Completed")
    await refresher.refresh_once()
    assert await _members(sessions, "never-bought") == set()


async def test_journeys_can_ask_live_whether_a_customer_is_in_a_segment(sessions, settings):
    from temporalio.testing import ActivityEnvironment

    from activities.segment_contracts import SegmentCheck
    from activities.segments import SegmentActivities

    await _create(sessions, "berliners", {"trait": "city", "op": "equals", "value": "Berlin"})
    await _identify(sessions, "ada", city="Berlin")  # no refresher pass yet: stored membership is stale
    async with sessions() as session:
        ada = await session.scalar(select(Customer.id).where(Customer.user_id == "ada"))
    check = SegmentActivities(settings, sessions).customer_in_segment
    assert await ActivityEnvironment().run(check, SegmentCheck("berliners", ada)) is True
    await _identify(sessions, "ada", city="Paris")
    assert await ActivityEnvironment().run(check, SegmentCheck("berliners", ada)) is False


async def test_the_segment_list_shows_each_current_rule_and_member_count_in_one_query(engine, sessions):
    for user in ("ada", "bob"):
        await _track(sessions, user, "Order Completed")
    await _identify(sessions, "ada", city="Berlin")
    await _create(sessions, "recent-buyers", RECENT_BUYERS)
    await _create(sessions, "berliners", {"trait": "city", "op": "equals", "value": "Paris"})
    await _create(sessions, "nobody", {"event": "Never Sent", "within_days": 30})
    async with transaction(sessions) as session:  # version 2 of berliners, the rule the list must show
        berlin = {"trait": "city", "op": "equals", "value": "Berlin"}
        await segments.update(session, "berliners", SegmentUpdate(rule=berlin))

    statements: list[str] = []

    def record(_conn, _cursor, statement, *_args):
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        async with sessions() as session:
            listed = await segments.list_all(session)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)
    assert [(s.id, s.version, s.rule, s.members) for s in listed] == [
        ("recent-buyers", 1, RECENT_BUYERS, 2),
        ("berliners", 2, berlin, 1),
        ("nobody", 1, {"event": "Never Sent", "within_days": 30}, 0),
    ]
    assert len(statements) == 1, statements
