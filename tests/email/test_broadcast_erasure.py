"""A customer erased after a broadcast page was planned (their ledger row claimed) and before its
messages went out is never mailed: marketing and operational broadcasts alike. The row ends skipped,
counted so, and nothing of the person's address is kept by the broadcast."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

import pytest
from sqlalchemy import select

import activities.broadcasts as batch_activity
from activities.broadcasts import BroadcastSender
from activities.contracts import BroadcastBatchRequest
from domain.auth import service as auth
from domain.auth.schemas import Role
from domain.broadcasts import service as broadcasts
from domain.broadcasts.schemas import BroadcastIn
from domain.customers import service as customers
from domain.db import transaction
from domain.email import service as email
from domain.email.models import Message
from domain.subscriptions.models import Suppression
from tests.conftest import make_key
from tests.email.helpers import add_customer, add_template, done_or_waiting_on_a_lock

KINDS = {
    "marketing": {},
    "operational": {"kind": "operational", "reason": "Terms change", "template_id": "terms"},
}


async def _setup(sessions, kind: str) -> tuple[int, int]:
    ann = await add_customer(sessions, email="ann@example.com", traits={"first_name": "Ann"})
    bob = await add_customer(sessions, email="bob@example.com", traits={"first_name": "Bob"})
    await add_template(sessions)
    await add_template(sessions, id="terms", name="Terms", category="transactional")
    spec = {"id": "spring", "name": "Spring", "template_id": "welcome", "audience": {"kind": "all"}}
    async with transaction(sessions) as session:
        by = await auth.authenticate(session, await make_key(sessions, role=Role.admin))
    async with transaction(sessions) as session:
        await broadcasts.create(session, BroadcastIn(**(spec | KINDS[kind])), by=by)
    return ann, bob


async def _erase(sessions, customer_id: int) -> None:
    async with transaction(sessions) as session:
        await customers.hold_for_erasure(session, customer_id)
        await customers.erase(session, customer_id, by_key_id=None, reason="asked to be forgotten")


async def _assert_bob_skipped(sessions, ann: int) -> None:
    async with sessions() as session:
        rows = (await session.scalars(select(Message).order_by(Message.id))).all()
        assert [(m.customer_id, m.to_address, m.status, m.error) for m in rows] == [
            (ann, "ann@example.com", "sent", None),
            (None, None, "skipped", broadcasts.ERASED),
        ]
        assert rows[1].subject is None and rows[1].meta == {}
        row = await broadcasts.get(session, "spring")
        assert (row.sent, row.skipped, row.failed) == (1, 1, 0)
        kept = (await session.scalars(select(Suppression.address))).all()
        assert not [a for a in kept if "bob" in a]


@pytest.mark.parametrize("kind", KINDS)
async def test_the_send_steps_skip_a_customer_erased_since_planning(sessions, kind):
    """The batch's steps as the activity runs them: plan, (erasure), hold and send, record, close."""
    ann, bob = await _setup(sessions, kind)
    async with transaction(sessions) as session:
        plan = await broadcasts.plan_batch(session, "spring", 0, lambda key: f"<{key}@test>")
    assert [c["id"] for c in plan.todo] == [ann, bob]

    await _erase(sessions, bob)

    async with transaction(sessions) as session:
        todo, erased = await broadcasts.hold_recipients(session, "spring", plan.todo)
        assert [c["id"] for c in todo] == [ann]
        await broadcasts.record_results(
            session,
            {broadcasts.message_key("spring", c["id"]): "Hi" for c in todo},
            [{"k": k, "s": "skipped", "e": broadcasts.ERASED, "subj": None, "at": None} for k in erased],
        )
        counts = await broadcasts.finish_batch(session, "spring", 0, plan.last_id, plan.keys)
    assert counts == {"sent": 1, "skipped": 1}
    await _assert_bob_skipped(sessions, ann)


@pytest.mark.parametrize("kind", KINDS)
async def test_the_batch_activity_does_not_mail_a_customer_erased_after_planning(
    settings, sessions, capture, mailer, monkeypatch, kind
):
    """The real batch activity, with the erasure committed right after its planning transaction (the
    first one a batch opens) and before the page is handed to the renderer."""
    ann, bob = await _setup(sessions, kind)
    real = batch_activity.transaction
    erased = []

    @asynccontextmanager
    async def then_erase(sessions_):
        async with real(sessions_) as session:
            yield session
        if not erased:
            erased.append(bob)
            await _erase(sessions, bob)

    monkeypatch.setattr(batch_activity, "transaction", then_erase)
    result = await BroadcastSender(settings, sessions, mailer).run_batch(
        BroadcastBatchRequest(broadcast_id="spring", after_id=0)
    )

    assert erased == [bob]
    assert (result.sent, result.skipped, result.failed) == (1, 1, 0)
    got = await capture.wait_for_count(1)
    assert [m["to"] for m in got] == ["ann@example.com"]
    assert capture.handler.received == 1
    await _assert_bob_skipped(sessions, ann)


async def test_an_erasure_waits_for_a_held_recipient_to_be_recorded(sessions, engine):
    """PostgreSQL: from the re-check until its outcome is recorded the profile is key-share locked,
    so an erasure starting meanwhile waits, then anonymises the complete row: the person is never
    mailed after the erasure commits."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite lets one writer in at a time: the check commits before the send")
    ann, bob = await _setup(sessions, "marketing")
    async with transaction(sessions) as session:
        plan = await broadcasts.plan_batch(session, "spring", 0, lambda key: f"<{key}@test>")
    async with transaction(sessions) as holding:
        todo, erased = await broadcasts.hold_recipients(holding, "spring", plan.todo)
        assert ([c["id"] for c in todo], erased) == ([ann, bob], [])
        erasure = asyncio.create_task(_erase(sessions, bob))
        while not await done_or_waiting_on_a_lock(erasure, engine):
            await asyncio.sleep(0.01)
        assert not erasure.done()  # waiting for the held profile
        async with transaction(sessions) as session:  # the messages went out; the recorder commits
            keys = {broadcasts.message_key("spring", c["id"]): "Hi" for c in todo}
            await broadcasts.record_results(session, keys, [])
            await broadcasts.finish_batch(session, "spring", 0, plan.last_id, plan.keys)
    await erasure
    async with sessions() as session:
        rows = (await session.scalars(select(Message).order_by(Message.id))).all()
        assert [(m.customer_id, m.to_address, m.status, m.subject) for m in rows] == [
            (ann, "ann@example.com", "sent", "Hi"),
            (None, None, "sent", None),
        ]


async def test_outcomes_recorded_after_an_erasure_keep_nothing_of_the_person(sessions):
    """SQLite lets the erasure in between the re-check and the recording: the recorded outcome then
    keeps no subject, no error quoting the address, and a bounce suppresses the address as a digest."""
    ann, bob = await _setup(sessions, "marketing")
    async with transaction(sessions) as session:
        plan = await broadcasts.plan_batch(session, "spring", 0, lambda key: f"<{key}@test>")
    async with transaction(sessions) as session:
        todo, _ = await broadcasts.hold_recipients(session, "spring", plan.todo)
    await _erase(sessions, ann)
    await _erase(sessions, bob)
    ann_key, bob_key = (broadcasts.message_key("spring", c["id"]) for c in todo)
    refused = "(550, 'no such user: bob@example.com')"
    async with transaction(sessions) as session:
        failure = {"k": bob_key, "s": "failed", "e": refused, "subj": "Hi Bob", "at": None}
        await broadcasts.record_results(session, {ann_key: "Hi Ann"}, [failure])
        await email.record_bounces(session, [(bob_key, "bob@example.com", refused)])
    async with sessions() as session:
        rows = (await session.scalars(select(Message).order_by(Message.id))).all()
        assert [(m.customer_id, m.to_address, m.status, m.subject, m.error) for m in rows] == [
            (None, None, "sent", None, None),
            (None, None, "failed", None, customers.ERASED_ERROR),
        ]
        kept = (await session.scalars(select(Suppression))).all()
        assert [(s.address, s.reason) for s in kept] == [
            ("sha256:" + customers.sha256("bob@example.com"), "bounced")
        ]
        assert not [s for s in kept if s.detail and "bob" in s.detail]
