"""Goals and exit criteria interrupt waits; versions pin running customers; triggers enroll once;
re-entry policies behave as documented."""

from __future__ import annotations

from sqlalchemy import select

from domain.db import transaction
from domain.events import service as events
from domain.events.models import Event, EventOutbox
from domain.events.schemas import TrackCall
from runtime import event_router
from runtime.event_router import EventRouter
from tests.conftest import wait_for
from tests.workflows.harness import engine
from workflows.journey import JourneyWorkflow


def _onboarding(wait: str = "30d", rules: dict | None = None, subject_template: str = "tips") -> dict:
    return {
        "nodes": [
            {"id": "start", "type": "entry", "event": "Signed Up", "next": "welcome"},
            {"id": "welcome", "type": "send_email", "template_id": "welcome", "next": "pause"},
            {"id": "pause", "type": "wait", "duration": wait, "next": "tips"},
            {"id": "tips", "type": "send_email", "template_id": subject_template, "next": "done"},
            {"id": "done", "type": "exit"},
        ],
        "rules": rules or {},
    }


async def _templates(e) -> None:
    await e.template("welcome", "Welcome {{ traits.name }}")
    await e.template("tips", "Tips for {{ traits.name }}")
    await e.template("tips-v2", "New tips for {{ traits.name }}")


async def test_goal_event_interrupts_a_30_day_wait_at_once(env, sessions, settings):
    async with engine(env, sessions, settings) as e:
        await _templates(e)
        await e.journey("onboarding", _onboarding(rules={"goal": {"event": "Order Completed"}}))
        ada = await e.customer("ada")
        await e.track("ada", "Signed Up")
        handle = e.handle("onboarding", ada)
        await wait_for(lambda: e.listening(ada, "Order Completed"))
        await wait_for(lambda: _at(handle, "pause"))

        await e.track("ada", "Order Completed", total=42)
        result = await handle.result()  # no time skipping: the goal alone must end the wait

        assert result.status == "converted"
        assert result.path == ["welcome", "pause"]
        assert [m["subject"] for m in e.mailbox()] == ["Welcome Ada"]
        [enrollment] = await e.enrollments("onboarding")
        assert enrollment.status == "converted"
        assert not await e.listening(ada, "Order Completed")


async def test_exit_criterion_takes_the_customer_out_without_conversion(env, sessions, settings):
    async with engine(env, sessions, settings) as e:
        await _templates(e)
        rules = {"exit_when": [{"event": "Unsubscribed", "where": {"list": "marketing"}}]}
        await e.journey("onboarding", _onboarding(rules=rules))
        ada = await e.customer("ada")
        await e.track("ada", "Signed Up")
        handle = e.handle("onboarding", ada)
        await wait_for(lambda: _at(handle, "pause"))
        await e.track("ada", "Unsubscribed", list="billing")  # not the criterion
        await e.track("ada", "Unsubscribed", list="marketing")

        result = await handle.result()

        assert result.status == "exited"
        assert [m["subject"] for m in e.mailbox()] == ["Welcome Ada"]


async def test_customer_inside_version_1_finishes_on_version_1(env, sessions, settings):
    async with engine(env, sessions, settings) as e:
        await _templates(e)
        await e.journey("onboarding", _onboarding(wait="2d"))
        ada = await e.customer("ada")
        await e.track("ada", "Signed Up")
        await wait_for(lambda: _at(e.handle("onboarding", ada), "pause"))

        await e.journey("onboarding", _onboarding(wait="1d", subject_template="tips-v2"))  # version 2
        bob = await e.customer("bob")
        await e.track("bob", "Signed Up")

        assert (await e.result(e.handle("onboarding", ada))).path == ["welcome", "pause", "tips", "done"]
        await e.result(e.handle("onboarding", bob))
        subjects = sorted(m["subject"] for m in e.mailbox())
        assert subjects == ["New tips for Bob", "Tips for Ada", "Welcome Ada", "Welcome Bob"]
        versions = {en.customer_id: en.version for en in await e.enrollments("onboarding")}
        assert versions == {ada: 1, bob: 2}


async def test_the_same_trigger_delivered_twice_enrolls_once(env, sessions, settings):
    async with engine(env, sessions, settings) as e:
        await _templates(e)
        await e.journey("onboarding", _onboarding(wait="1h"))
        ada = await e.customer("ada")
        await e.track("ada", "Signed Up")
        # A routing pass that crashed before dequeuing runs again over the same events.
        async with transaction(e.sessions) as session:
            session.add_all(EventOutbox(event_id=i) for i in await session.scalars(select(Event.id)))
        await e.router.route_once()

        await e.result(e.handle("onboarding", ada))
        assert len(await e.enrollments("onboarding")) == 1
        assert sorted(m["subject"] for m in e.mailbox()) == ["Tips for Ada", "Welcome Ada"]


def _one_email(reentry: str, **entry) -> dict:
    return {
        "nodes": [
            {
                "id": "start",
                "type": "entry",
                "event": "Order Completed",
                "reentry": reentry,
                "next": "thanks",
                **entry,
            },
            {"id": "thanks", "type": "send_email", "template_id": "thanks", "next": "later"},
            {"id": "later", "type": "wait", "duration": "1h", "next": "done"},
            {"id": "done", "type": "exit"},
        ]
    }


async def _orders(e, reentry: str, **entry) -> tuple[int, list[str]]:
    await e.template("thanks", "Thanks for order {{ properties.order_id }}")
    await e.journey("thanks", _one_email(reentry, **entry))
    ada = await e.customer("ada")
    await e.track("ada", "Order Completed", order_id="o1")
    await e.track("ada", "Order Completed", order_id="o1")  # the shop retried the same order
    await e.track("ada", "Order Completed", order_id="o2")  # while the first is still inside
    for enrollment in await e.enrollments("thanks"):
        await e.result(e.client.get_workflow_handle_for(JourneyWorkflow.run, enrollment.workflow_id))
    await e.track("ada", "Order Completed", order_id="o3")  # after leaving
    for enrollment in await e.enrollments("thanks"):
        await e.result(e.client.get_workflow_handle_for(JourneyWorkflow.run, enrollment.workflow_id))
    return ada, sorted(m["subject"] for m in e.mailbox())


async def test_reentry_once_enrolls_a_customer_a_single_time(env, sessions, settings):
    async with engine(env, sessions, settings) as e:
        _, subjects = await _orders(e, "once")
        assert subjects == ["Thanks for order o1"]


async def test_reentry_after_exit_waits_for_the_customer_to_leave(env, sessions, settings):
    async with engine(env, sessions, settings) as e:
        _, subjects = await _orders(e, "after_exit")
        assert subjects == ["Thanks for order o1", "Thanks for order o3"]


async def test_reentry_always_enrolls_every_trigger(env, sessions, settings):
    async with engine(env, sessions, settings) as e:
        _, subjects = await _orders(e, "always")
        assert subjects == [
            "Thanks for order o1",
            "Thanks for order o1",
            "Thanks for order o2",
            "Thanks for order o3",
        ]


async def test_reentry_once_per_key_enrolls_once_per_order(env, sessions, settings):
    async with engine(env, sessions, settings) as e:
        _, subjects = await _orders(e, "once_per_key", entry_key="order_id")
        assert subjects == ["Thanks for order o1", "Thanks for order o2", "Thanks for order o3"]


async def _at(handle, node_id: str) -> bool:
    steps = await handle.query(JourneyWorkflow.path)
    return bool(steps) and steps[-1].node_id == node_id and steps[-1].left_at is None


async def test_after_exit_two_triggers_routed_at_once_by_two_routers_enroll_once(env, sessions, settings):
    """Two routers (workers side by side) each take one of a customer's two orders: the second must
    find the customer inside, as one router routing both would."""
    async with engine(env, sessions, settings) as e:
        await e.template("thanks", "Thanks for order {{ properties.order_id }}")
        await e.journey("thanks", _one_email("after_exit"))
        ada = await e.customer("ada")
        async with transaction(e.sessions) as session:
            await events.ingest(
                session,
                [
                    TrackCall(userId="ada", event="Order Completed", properties={"order_id": o}, messageId=o)
                    for o in ("o1", "o2")
                ],
                source_key_id=None,
            )
        first = EventRouter(e.client, sessions, task_queue=e.task_queue, batch_size=1)
        second = EventRouter(e.client, sessions, task_queue=e.task_queue, batch_size=1)
        real_start = event_router.start_enrollment
        interleaved = False

        async def start_after_the_other_router_routed(*args, **kwargs):
            # The first router has checked who is inside and is about to start: the second routes now.
            nonlocal interleaved
            if not interleaved:
                interleaved = True
                assert await second.route_once() == 1
            return await real_start(*args, **kwargs)

        event_router.start_enrollment = start_after_the_other_router_routed
        try:
            assert await first.route_once() == 1
        finally:
            event_router.start_enrollment = real_start
        assert interleaved

        enrollments = await e.enrollments("thanks")
        for enrollment in enrollments:
            await e.result(e.client.get_workflow_handle_for(JourneyWorkflow.run, enrollment.workflow_id))
        # One enrollment, entered on whichever trigger started first; the other is not a second entry.
        [mail] = e.mailbox()
        assert mail["subject"] in ("Thanks for order o1", "Thanks for order o2")
        assert [n.customer_id for n in await e.enrollments("thanks")] == [ada]


async def test_after_exit_a_trigger_routed_again_after_the_customer_left_does_not_reenter(
    env, sessions, settings
):
    """A routing pass that died before dequeuing leaves its rows to the next pass, which may come after
    the enrollment those rows started has ended: the same trigger must not enroll the customer again."""
    async with engine(env, sessions, settings) as e:
        await e.template("thanks", "Thanks for order {{ properties.order_id }}")
        await e.journey("thanks", _one_email("after_exit"))
        await e.customer("ada")
        await e.track("ada", "Order Completed", order_id="o1")
        [first] = await e.enrollments("thanks")
        await e.result(e.client.get_workflow_handle_for(JourneyWorkflow.run, first.workflow_id))
        async with transaction(e.sessions) as session:
            session.add_all(EventOutbox(event_id=i) for i in await session.scalars(select(Event.id)))
        await e.router.route_once()
        await e.track("ada", "Order Completed", order_id="o2")  # after leaving: enters again

        for enrollment in await e.enrollments("thanks"):
            await e.result(e.client.get_workflow_handle_for(JourneyWorkflow.run, enrollment.workflow_id))
        assert sorted(m["subject"] for m in e.mailbox()) == ["Thanks for order o1", "Thanks for order o2"]
        assert len(await e.enrollments("thanks")) == 2
