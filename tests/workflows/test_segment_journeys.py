"""Segments drive journeys: entering a segment enrolls the customer by itself (in a routing lane of its
own, so ordinary events never queue behind a segment that admits many at once), entering a goal
segment converts a waiting customer, and leaving a segment can be an exit criterion."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select

from activities.contracts import EventRef
from domain.customers.models import Customer
from domain.db import transaction
from domain.events.models import LANE_SEGMENTS, EventOutbox
from domain.journeys import service as journeys
from domain.journeys.models import Enrollment
from domain.segments import service as segments
from runtime.event_router import EventRouter
from runtime.journey_start import start_enrollment
from tests.conftest import wait_for
from tests.workflows.harness import engine

VIPS = {"trait": "vip", "op": "equals", "value": True}
SEGMENT_WAIT = {
    "nodes": [
        {"id": "start", "type": "entry", "trigger": "segment", "segment_id": "vips", "next": "wait"},
        {"id": "wait", "type": "wait", "duration": "1d", "next": "done"},
        {"id": "done", "type": "exit"},
    ]
}


def _segment_entry(segment_id: str, template_id: str, reentry: str = "once") -> dict:
    return {
        "nodes": [
            {
                "id": "start",
                "type": "entry",
                "trigger": "segment",
                "segment_id": segment_id,
                "reentry": reentry,
                "next": "hello",
            },
            {"id": "hello", "type": "send_email", "template_id": template_id, "next": "done"},
            {"id": "done", "type": "exit"},
        ]
    }


def _wait_then_nudge(rules: dict) -> dict:
    return {
        "nodes": [
            {"id": "start", "type": "entry", "event": "Signed Up", "next": "wait"},
            {"id": "wait", "type": "wait", "duration": "3d", "next": "nudge"},
            {"id": "nudge", "type": "send_email", "template_id": "nudge", "next": "done"},
            {"id": "done", "type": "exit"},
        ],
        "rules": rules,
    }


async def _enrollments(e, journey_id: str | None = None) -> list[tuple[str, int]]:
    async with transaction(e.sessions) as session:
        stmt = select(Enrollment.journey_id, Enrollment.customer_id).order_by(Enrollment.id)
        if journey_id is not None:
            stmt = stmt.where(Enrollment.journey_id == journey_id)
        return [(j, c) for j, c in await session.execute(stmt)]


async def test_entering_a_segment_enrolls_into_every_journey_on_it_honouring_reentry(env, sessions, settings):
    async with engine(env, sessions, settings) as e:
        await e.template("welcome", "Welcome to VIP, {{ traits.name }}")
        await e.template("perk", "Your VIP perk, {{ traits.name }}")
        await e.segment("vips", VIPS)
        await e.journey("vip-welcome", _segment_entry("vips", "welcome"))
        await e.journey("vip-perk", _segment_entry("vips", "perk", reentry="always"))
        members = [await e.customer(name) for name in ("ada", "bo", "cy")]
        outsider = await e.customer("zed")

        await e.move_into_segments(members, vip=True)

        for journey_id in ("vip-welcome", "vip-perk"):
            for customer_id in members:
                key = None if journey_id == "vip-welcome" else await _entry_key(e, customer_id)
                result = await e.result(e.handle(journey_id, customer_id, key))
                assert result.path == ["hello", "done"]
        # A pass that changes nothing records no new entry; leaving and entering again re-enters only
        # the journey that allows it.
        await e.move_into_segments(members, vip=True)
        await e.move_into_segments(members[:1], vip=False)
        await e.move_into_segments(members[:1], vip=True)

        assert sorted(await _enrollments(e, "vip-welcome")) == [("vip-welcome", c) for c in members]
        perk = await _enrollments(e, "vip-perk")
        assert sorted(c for _, c in perk) == sorted([*members, members[0]])
        assert outsider not in {c for _, c in await _enrollments(e)}
        await wait_for(lambda: _mail_count(e, 7))
        subjects = sorted(m["subject"] for m in e.mailbox())
        assert subjects == sorted(
            [f"Welcome to VIP, {n}" for n in ("Ada", "Bo", "Cy")]
            + [f"Your VIP perk, {n}" for n in ("Ada", "Ada", "Bo", "Cy")]
        )


async def _entry_key(e, customer_id: int) -> str:
    """The ``always`` enrollment's key: the id of its Segment Entered event."""
    async with transaction(e.sessions) as session:
        workflow_id = await session.scalar(
            select(Enrollment.workflow_id).where(
                Enrollment.journey_id == "vip-perk", Enrollment.customer_id == customer_id
            )
        )
    return workflow_id.rsplit("/", 1)[1]


async def _mail_count(e, n: int) -> bool:
    return len(e.mailbox()) >= n


async def test_a_segment_admitting_many_at_once_does_not_hold_up_ordinary_events(env, sessions, settings):
    async with engine(env, sessions, settings) as e:
        await e.segment("vips", VIPS)
        await e.journey("vip", SEGMENT_WAIT)
        signup_entry = {"id": "start", "type": "entry", "event": "Signed Up", "next": "wait"}
        await e.journey("signup", {"nodes": [signup_entry, *SEGMENT_WAIT["nodes"][1:]]})
        crowd = [await e.customer(f"crowd{i}") for i in range(25)]
        newcomer = await e.customer("nia")
        async with transaction(e.sessions) as session:
            await session.execute(
                Customer.__table__.update().where(Customer.id.in_(crowd)).values(traits={"vip": True})
            )
            await segments.refresh_customers(session, crowd)

        # The ordinary lane routes the sign-up in one pass; the 25 segment entries wait in their lane.
        await e.track("nia", "Signed Up")
        assert await _enrollments(e) == [("signup", newcomer)]
        assert await _queued(e, LANE_SEGMENTS) == 25

        lane = EventRouter(e.client, e.sessions, task_queue=e.task_queue, lane=LANE_SEGMENTS, batch_size=10)
        passes = []
        while routed := await lane.route_once():
            passes.append(routed)
        assert passes == [10, 10, 5]
        assert sorted(c for _, c in await _enrollments(e, "vip")) == sorted(crowd)
        for customer_id in crowd[:3]:
            await e.handle("vip", customer_id).describe()  # started in Temporal, not only recorded


async def _queued(e, lane: str) -> int:
    async with transaction(e.sessions) as session:
        return await session.scalar(
            select(func.count()).select_from(EventOutbox).where(EventOutbox.lane == lane)
        )


async def test_entering_the_goal_segment_converts_at_once_and_a_member_converts_at_the_first_wait(
    env, sessions, settings
):
    async with engine(env, sessions, settings) as e:
        await e.template("nudge", "Still thinking, {{ traits.name }}?")
        await e.segment("buyers", {"trait": "bought", "op": "equals", "value": True})
        await e.journey("trial", _wait_then_nudge({"goal": {"segment": "buyers"}}))
        ann, bob, cyd = [await e.customer(n) for n in ("ann", "bob", "cyd")]
        await e.move_into_segments([bob], bought=True)  # a buyer before she even signs up

        await e.track("ann", "Signed Up")
        await e.track("bob", "Signed Up")
        await e.track("cyd", "Signed Up")
        await wait_for(lambda: e.listening(ann, "Segment Entered"))
        await e.move_into_segments([ann], bought=True)  # buys while waiting

        for customer_id in (ann, bob):
            handle = e.handle("trial", customer_id)
            result = await e.result(handle)
            assert (result.status, result.path) == ("converted", ["wait"])
            [wait] = await handle.query("path", result_type=list)
            waited = datetime.fromisoformat(wait["left_at"]) - datetime.fromisoformat(wait["entered_at"])
            assert waited < timedelta(minutes=1)
            assert wait["outcome"] == "converted"
        # The one who never buys waits the three days and gets the nudge.
        assert (await e.result(e.handle("trial", cyd))).status == "completed"
        assert [m["subject"] for m in e.mailbox()] == ["Still thinking, Cyd?"]
        statuses = {c: s for c, s in await _statuses(e, "trial")}
        assert statuses == {ann: "converted", bob: "converted", cyd: "completed"}


async def _statuses(e, journey_id: str) -> list[tuple[int, str]]:
    async with transaction(e.sessions) as session:
        return list(
            await session.execute(
                select(Enrollment.customer_id, Enrollment.status).where(Enrollment.journey_id == journey_id)
            )
        )


async def test_leaving_a_segment_can_be_an_exit_criterion(env, sessions, settings):
    async with engine(env, sessions, settings) as e:
        await e.template("nudge", "Still thinking, {{ traits.name }}?")
        await e.segment("actives", {"trait": "active", "op": "equals", "value": True})
        await e.journey(
            "trial",
            _wait_then_nudge(
                {"exit_when": [{"event": "Segment Exited", "where": {"segment_id": "actives"}}]}
            ),
        )
        eve = await e.customer("eve")
        await e.move_into_segments([eve], active=True)
        await e.track("eve", "Signed Up")
        await wait_for(lambda: e.listening(eve, "Segment Exited"))

        await e.move_into_segments([eve], active=False)

        result = await e.result(e.handle("trial", eve))
        assert (result.status, result.path) == ("exited", ["wait"])
        assert e.mailbox() == []


async def test_a_segment_entry_started_by_a_pass_that_died_before_recording_it_is_recorded(
    env, sessions, settings
):
    async with engine(env, sessions, settings) as e:
        await e.segment("vips", VIPS)
        await e.journey("vip", SEGMENT_WAIT)
        ada, bo = await e.customer("ada"), await e.customer("bo")
        async with transaction(e.sessions) as session:
            version = await journeys.get_version(session, "vip", 1)
        # A router started Ada's enrollment, then died before recording it or dequeuing her entry.
        workflow_id = journeys.workflow_id_for("vip", ada)
        ref = EventRef(id=0, name="Segment Entered")
        assert await start_enrollment(e.client, version, ada, workflow_id, ref, task_queue=e.task_queue)

        await e.move_into_segments([ada, bo], vip=True)

        assert sorted(c for _, c in await _enrollments(e, "vip")) == sorted([ada, bo])
        assert await _queued(e, LANE_SEGMENTS) == 0
        assert (await e.handle("vip", ada).describe()).status.name == "RUNNING"
