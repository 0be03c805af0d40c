"""A journey's customer changes while it runs: a visitor who logs in goes on as the known customer they
turn out to be; a customer erased on request gets nothing more, and nothing more of them is kept."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select

from domain.customers import service as customers
from domain.customers.models import Customer
from domain.db import transaction
from domain.email.models import Message
from domain.events import service as events
from domain.events.schemas import IdentifyCall, TrackCall
from domain.journeys import service as journeys
from domain.journeys.models import JourneyStep
from domain.loyalty.models import LoyaltyEntry
from tests.conftest import wait_for
from tests.workflows.harness import engine
from tests.workflows.test_abandoned_cart import _setup
from tests.workflows.test_nodes import _http_receiver


async def _visitor_tracks(e, anonymous_id: str, event: str, **properties) -> int:
    async with transaction(e.sessions) as session:
        call = TrackCall(
            anonymousId=anonymous_id, event=event, properties=properties, messageId=uuid.uuid4().hex
        )
        await events.ingest(session, [call], source_key_id=None)
        visitor = await session.scalar(select(Customer.id).where(Customer.anonymous_id == anonymous_id))
    await e.router.route_once()
    return visitor


async def _logs_in(e, anonymous_id: str, user_id: str) -> None:
    async with transaction(e.sessions) as session:
        call = IdentifyCall(userId=user_id, anonymousId=anonymous_id, traits={}, messageId=uuid.uuid4().hex)
        await events.ingest(session, [call], source_key_id=None)
    await e.router.route_once()


async def _cart_then_log_in(e) -> tuple[int, int]:
    """The cart journey set up; visitor v-1 enters it with cart c1, then logs in as Ada (a small
    customer). Returns Ada's id and the visitor's."""
    await _setup(e)
    ada = await e.customer("ada", value_tier="small")
    visitor = await _visitor_tracks(e, "v-1", "Cart Updated", cart_id="c1")
    await wait_for(lambda: e.listening(visitor, "Order Completed"))
    await _logs_in(e, "v-1", "ada")
    return ada, visitor


async def test_a_visitors_cart_reminder_reaches_the_known_customer_they_log_in_as(env, sessions, settings):
    async with engine(env, sessions, settings) as e:
        ada, visitor = await _cart_then_log_in(e)

        handle = e.handle("cart", visitor, "c1")
        result = await e.result(handle)

        assert result.path == ["wait_order", "reminder", "wait_day", "tier", "done"]
        assert [(m["to"], m["subject"]) for m in e.mailbox()] == [
            ("ada@example.com", "Ada, your cart c1 is waiting")
        ]
        async with e.sessions() as session:  # the journey's record is Ada's, before and after the login
            steps = await session.scalars(
                select(JourneyStep.customer_id).where(JourneyStep.workflow_id == handle.id)
            )
            assert set(steps) == {ada}
            assert [n.customer_id for n in await journeys.enrollments(session, "cart")] == [ada]


async def test_the_known_customers_order_stops_the_visitors_cart_reminder(env, sessions, settings):
    async with engine(env, sessions, settings) as e:
        _, visitor = await _cart_then_log_in(e)
        await e.track("ada", "Order Completed", cart_id="c1")

        result = await e.result(e.handle("cart", visitor, "c1"))

        assert result.path == ["wait_order", "done"]
        assert e.mailbox() == []


async def test_a_customer_erased_while_waiting_gets_nothing_more_and_leaves_no_record(
    env, sessions, settings
):
    async with engine(env, sessions, settings) as e:
        await _setup(e)
        ada = await e.customer("ada", value_tier="key")  # a key customer: the journey would escalate
        await e.track("ada", "Cart Updated", cart_id="c1")
        await wait_for(lambda: e.listening(ada, "Order Completed"))
        async with transaction(sessions) as session:
            await customers.erase(session, ada, by_key_id=None, reason="asked to be forgotten")

        handle = e.handle("cart", ada, "c1")
        result = await e.result(handle)

        assert result.path == ["wait_order", "reminder", "wait_day", "tier", "done"]
        assert e.mailbox() == []
        assert await e.cases() == []
        async with e.sessions() as session:
            steps = await session.scalars(select(JourneyStep.id).where(JourneyStep.workflow_id == handle.id))
            assert list(steps) == []
            assert await journeys.enrollments(session, "cart") == []


async def test_a_cart_the_visitor_entered_with_is_not_entered_again_once_they_log_in(env, sessions, settings):
    """once_per_key: the visitor's cart c1 enrolled them; after they log in as Ada, Ada's next update of
    the same cart finds that enrollment (now hers) and does not start a second reminder."""
    async with engine(env, sessions, settings) as e:
        ada, _ = await _cart_then_log_in(e)
        await e.track("ada", "Cart Updated", cart_id="c1")  # another item in the same cart

        for enrollment in await e.enrollments("cart"):
            await e.result(e.handle("cart", int(enrollment.workflow_id.split("/")[3]), "c1"))

        assert [(m["to"], m["subject"]) for m in e.mailbox()] == [
            ("ada@example.com", "Ada, your cart c1 is waiting")
        ]
        assert [n.customer_id for n in await e.enrollments("cart")] == [ada]


async def test_a_visitor_and_the_customer_both_waiting_in_a_journey_send_its_next_email_once(
    env, sessions, settings
):
    """Ada's laptop and, anonymously, her phone both enter the pricing journey (once); logging in on the
    phone merges the two profiles. One person: the follow-up must reach her once."""
    pricing = {
        "nodes": [
            {"id": "start", "type": "entry", "event": "Pricing Viewed", "next": "wait"},
            {"id": "wait", "type": "wait", "duration": "1d", "next": "follow_up"},
            {"id": "follow_up", "type": "send_email", "template_id": "pricing", "next": "done"},
            {"id": "done", "type": "exit"},
        ]
    }
    async with engine(env, sessions, settings) as e:
        await e.template("pricing", "{{ traits.name }}, questions about our plans?")
        await e.journey("pricing", pricing)
        ada = await e.customer("ada")
        await e.track("ada", "Pricing Viewed")
        visitor = await _visitor_tracks(e, "v-1", "Pricing Viewed")
        await _logs_in(e, "v-1", "ada")

        kept = await e.result(e.handle("pricing", ada))
        ended = await e.result(e.handle("pricing", visitor))

        assert [m["subject"] for m in e.mailbox()] == ["Ada, questions about our plans?"]
        # The visitor's enrollment entered later: it left before its send, recorded as ended by the merge.
        assert (kept.status, ended.status) == ("completed", "exited")
        assert ended.path == ["wait", "follow_up"]
        assert await _sent_by(e) == [_wf("pricing", ada)]
        by_id = {n.workflow_id: n for n in await e.enrollments("pricing")}
        assert by_id[_wf("pricing", ada)].status == "completed"
        assert by_id[_wf("pricing", ada)].superseded_by is None
        assert by_id[_wf("pricing", visitor)].status == "exited"
        assert by_id[_wf("pricing", visitor)].superseded_by == _wf("pricing", ada)
        assert {n.customer_id for n in by_id.values()} == {ada}


def _wf(journey_id: str, customer_id: int, key: str | None = None) -> str:
    return journeys.workflow_id_for(journey_id, customer_id, key)


async def _sent_by(e) -> list[str]:
    """The enrollments whose sends went, by workflow id (a journey send's key starts with it)."""
    async with e.sessions() as session:
        keys = await session.scalars(select(Message.idempotency_key).where(Message.status == "sent"))
        return sorted(k.rsplit("/", 3)[0] for k in keys)


def _follow_up(entry: dict) -> dict:
    return {
        "nodes": [
            {"id": "start", "type": "entry", "next": "wait", **entry},
            {"id": "wait", "type": "wait", "duration": "1d", "next": "follow_up"},
            {"id": "follow_up", "type": "send_email", "template_id": "follow", "next": "done"},
            {"id": "done", "type": "exit"},
        ]
    }


async def test_the_earlier_entered_visitors_enrollment_goes_on_and_sends_when_the_customers_is_ended(
    env, sessions, settings
):
    """The rule is the later-entered enrollment goes, whichever profile it was: here the visitor
    entered first, so Ada's own enrollment ends at the merge and the visitor's (now hers) sends."""
    async with engine(env, sessions, settings) as e:
        await e.template("follow", "{{ traits.name }}, still thinking it over?")
        await e.journey("pricing", _follow_up({"event": "Pricing Viewed"}))
        ada = await e.customer("ada")
        visitor = await _visitor_tracks(e, "v-1", "Pricing Viewed")
        await e.track("ada", "Pricing Viewed")
        await _logs_in(e, "v-1", "ada")

        kept = await e.result(e.handle("pricing", visitor))
        ended = await e.result(e.handle("pricing", ada))

        assert (kept.status, ended.status) == ("completed", "exited")
        assert [(m["to"], m["subject"]) for m in e.mailbox()] == [
            ("ada@example.com", "Ada, still thinking it over?")
        ]
        assert await _sent_by(e) == [_wf("pricing", visitor)]
        by_id = {n.workflow_id: n for n in await e.enrollments("pricing")}
        assert by_id[_wf("pricing", ada)].superseded_by == _wf("pricing", visitor)
        assert (by_id[_wf("pricing", visitor)].status, by_id[_wf("pricing", ada)].status) == (
            "completed",
            "exited",
        )


async def test_a_merge_ends_only_the_visitors_cart_reminder_for_the_cart_the_customer_is_reminded_of(
    env, sessions, settings
):
    """once_per_key: the same cart twice is one reminder; the visitor's other cart keeps its own."""
    async with engine(env, sessions, settings) as e:
        await e.template("follow", "{{ traits.name }}, your cart {{ event.properties.cart_id }}")
        await e.journey(
            "cart", _follow_up({"event": "Cart Updated", "reentry": "once_per_key", "entry_key": "cart_id"})
        )
        ada = await e.customer("ada")
        await e.track("ada", "Cart Updated", cart_id="c1")
        visitor = await _visitor_tracks(e, "v-1", "Cart Updated", cart_id="c1")
        await _visitor_tracks(e, "v-1", "Cart Updated", cart_id="c2")
        await _logs_in(e, "v-1", "ada")

        results = {
            wf: (await e.result(e.handle("cart", c, k))).status
            for wf, c, k in [
                (_wf("cart", ada, "c1"), ada, "c1"),
                (_wf("cart", visitor, "c1"), visitor, "c1"),
                (_wf("cart", visitor, "c2"), visitor, "c2"),
            ]
        }

        assert sorted(m["subject"] for m in e.mailbox()) == ["Ada, your cart c1", "Ada, your cart c2"]
        assert await _sent_by(e) == sorted([_wf("cart", ada, "c1"), _wf("cart", visitor, "c2")])
        assert results == {
            _wf("cart", ada, "c1"): "completed",
            _wf("cart", visitor, "c1"): "exited",
            _wf("cart", visitor, "c2"): "completed",
        }
        by_id = {n.workflow_id: n.superseded_by for n in await e.enrollments("cart")}
        assert by_id == {
            _wf("cart", ada, "c1"): None,
            _wf("cart", visitor, "c1"): _wf("cart", ada, "c1"),
            _wf("cart", visitor, "c2"): None,
        }


async def test_a_merge_keeps_both_enrollments_of_an_always_journey_and_ends_the_once_duplicate(
    env, sessions, settings
):
    """``always``: every trigger is an enrollment of its own, so both go on and both send; the same
    merge ends the duplicate in a ``once`` journey they are both in."""
    async with engine(env, sessions, settings) as e:
        await e.template("follow", "{{ traits.name }}, thanks for looking")
        await e.journey("every", _follow_up({"event": "Pricing Viewed", "reentry": "always"}))
        await e.journey("pricing", _follow_up({"event": "Pricing Viewed"}))
        ada = await e.customer("ada")
        await e.track("ada", "Pricing Viewed")
        visitor = await _visitor_tracks(e, "v-1", "Pricing Viewed")
        await _logs_in(e, "v-1", "ada")

        every = sorted((n.workflow_id for n in await e.enrollments("every")), key=len)
        assert len(every) == 2
        for workflow_id in every:
            customer_id, key = workflow_id.split("/")[3:5]
            assert (await e.result(e.handle("every", int(customer_id), key))).status == "completed"
        await e.result(e.handle("pricing", ada))
        assert (await e.result(e.handle("pricing", visitor))).status == "exited"

        assert len(e.mailbox()) == 3
        sent = await _sent_by(e)
        assert sorted(w for w in sent if w.startswith("journey/every/")) == sorted(every)
        assert [w for w in sent if w.startswith("journey/pricing/")] == [_wf("pricing", ada)]
        assert {n.superseded_by for n in await e.enrollments("every")} == {None}


async def _both_enter_then_merge(e, journey: dict, entry_event: str = "Pricing Viewed") -> tuple[int, int]:
    """Ada, then (later) her phone as a visitor, enter the ``once`` journey; the phone logs in during
    the journey's first wait. Returns Ada's id and the visitor's (whose enrollment the merge ends)."""
    await e.journey("j", journey)
    ada = await e.customer("ada")
    await e.track("ada", entry_event)
    visitor = await _visitor_tracks(e, "v-1", entry_event)
    await _logs_in(e, "v-1", "ada")
    return ada, visitor


def _after_a_day(*steps: dict, entry_event: str = "Pricing Viewed") -> dict:
    """entry, a day's wait (the merge comes then), ``steps``, exit."""
    return {
        "nodes": [
            {"id": "start", "type": "entry", "event": entry_event, "next": "wait"},
            {"id": "wait", "type": "wait", "duration": "1d", "next": steps[0]["id"]},
            *steps,
            {"id": "done", "type": "exit"},
        ]
    }


async def test_a_merge_ended_enrollment_awards_no_points_and_sends_nothing(env, sessions, settings):
    """Points for viewing pricing, a day later a follow-up: Ada gets the points once, the email once;
    the visitor's enrollment (ended by the merge) leaves at its points step, recording nothing."""
    journey = _after_a_day(
        {"id": "award", "type": "award_points", "points": 50, "reason": "pricing", "next": "later"},
        {"id": "later", "type": "wait", "duration": "1d", "next": "follow_up"},
        {"id": "follow_up", "type": "send_email", "template_id": "follow", "next": "done"},
    )
    async with engine(env, sessions, settings) as e:
        await e.template("follow", "{{ traits.name }}, still thinking it over?")
        ada, visitor = await _both_enter_then_merge(e, journey)

        kept = await e.result(e.handle("j", ada))
        ended = await e.result(e.handle("j", visitor))

        assert await e.points(ada) == 50
        assert [m["subject"] for m in e.mailbox()] == ["Ada, still thinking it over?"]
        assert (kept.status, ended.status) == ("completed", "exited")
        assert ended.path == ["wait", "award"]
        async with e.sessions() as session:
            keys = list(await session.scalars(select(LoyaltyEntry.idempotency_key)))
        assert [k.split(":", 2)[2].rsplit("/", 3)[0] for k in keys] == [_wf("j", ada)]  # journey:<id>:<key>


async def test_a_merge_ended_enrollment_opens_no_second_case_for_the_escalation(env, sessions, settings):
    """A complaint escalates to an agent after a day: one person, one case, for the enrollment kept."""
    journey = _after_a_day(
        {
            "id": "esc",
            "type": "escalate",
            "subject": "Complaint",
            "team": "care",
            "sla": "8h",
            "resolved_next": "done",
            "breached_next": "sorry",
        },
        {"id": "sorry", "type": "send_email", "template_id": "sorry", "next": "done"},
        entry_event="Complained",
    )
    async with engine(env, sessions, settings) as e:
        await e.team("care")
        await e.template("sorry", "Sorry {{ traits.name }}")
        ada, visitor = await _both_enter_then_merge(e, journey, "Complained")

        kept = await e.result(e.handle("j", ada))
        ended = await e.result(e.handle("j", visitor))

        [case] = await e.cases()
        assert (case.customer_id, case.waiting_workflow_id) == (ada, _wf("j", ada))
        assert (kept.path, ended.path) == (["wait", "esc", "sorry", "done"], ["wait", "esc"])
        assert ended.status == "exited"
        assert [m["subject"] for m in e.mailbox()] == ["Sorry Ada"]


@pytest.mark.parametrize("kind", ["webhook", "wait_for_event", "update_trait", "deduct_points"])
async def test_a_merge_ended_enrollment_leaves_at_its_next_step_with_an_effect(env, sessions, settings, kind):
    """Whatever the step: the ended enrollment does nothing there and leaves (it does not wait out a
    timeout either); the kept one does the step once."""
    received: list[tuple[dict, bytes]] = []
    server = await _http_receiver([], received)
    step = {
        "webhook": {"url": f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hook"},
        "wait_for_event": {"event": "Order Completed", "timeout": "2d", "timeout_next": "done"},
        "update_trait": {"traits": {"asked": True}},
        "deduct_points": {"points": 10, "insufficient_next": "done"},  # ada has no points to take
    }[kind]
    try:
        async with engine(env, sessions, settings) as e:
            ada, visitor = await _both_enter_then_merge(
                e, _after_a_day({"id": "step", "type": kind, "next": "done", **step})
            )
            kept_handle = e.handle("j", ada)
            await e.env.sleep(timedelta(days=1, hours=1))  # both are past the first wait
            if kind == "wait_for_event":  # the kept one waits: the order reaches it alone
                await wait_for(lambda: e.listening(ada, "Order Completed"))
                async with e.sessions() as session:
                    listeners = await journeys.listeners_for(session, {(ada, "Order Completed")})
                assert [w for *_, w in listeners] == [kept_handle.id]
                await e.track("ada", "Order Completed")
            ended = await e.result(e.handle("j", visitor))
            kept = await e.result(kept_handle)

            assert (ended.status, ended.path) == ("exited", ["wait", "step"])
            assert (kept.status, kept.path) == ("completed", ["wait", "step", "done"])
            assert len(received) == (1 if kind == "webhook" else 0)
            if kind == "webhook":
                assert json.loads(received[0][1])["customer_id"] == ada
                assert received[0][0]["idempotency-key"].startswith(kept_handle.id + "/")
    finally:
        server.close()
