"""An erased person's suppressions keep only digests of their addresses, and still suppress them.

Whoever has the address next (the person back, or someone else) is treated as the address was: not
mailed after a bounce, no marketing after a complaint, none after an unsubscribe until they opt in again.
"""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import Delete, select

from domain.customers import service as customers
from domain.customers.models import Customer
from domain.db import transaction
from domain.email.models import Message
from domain.events import service as events
from domain.events.schemas import IdentifyCall
from domain.subscriptions import service as subscriptions
from domain.subscriptions.models import Suppression
from domain.subscriptions.schemas import FeedbackBatch
from tests.conftest import rows_naming, wait_for
from tests.email.helpers import add_customer, done_or_waiting_on_a_lock


async def _erase(sessions, customer_id: int) -> None:
    async with transaction(sessions) as session:
        await customers.erase(session, customer_id, by_key_id=None, reason="asked")


async def _entries(sessions) -> list[tuple[str, str]]:
    async with sessions() as session:
        return [tuple(row) for row in await session.execute(select(Suppression.address, Suppression.reason))]


async def test_a_new_profile_at_an_erased_persons_complained_address_gets_no_marketing(sessions):
    ann = await add_customer(sessions, email="ann@example.com", traits={})
    async with transaction(sessions) as session:
        batch = FeedbackBatch.model_validate({"events": [{"type": "complaint", "email": "ann@example.com"}]})
        await subscriptions.record_feedback(session, batch)
    await _erase(sessions, ann)
    again = await add_customer(sessions, email="ann@example.com", traits={})

    async with sessions() as session:
        marketing = await subscriptions.blocked(session, {again: "ann@example.com"}, "marketing", None)
        transactional = await subscriptions.blocked(
            session, {again: "ann@example.com"}, "transactional", None
        )
    assert (marketing, transactional) == ({again: "address suppressed (complained)"}, {})
    [(address, reason)] = await _entries(sessions)
    assert address.startswith("sha256:") and reason == "complained"


async def test_an_erased_persons_unsubscribe_holds_for_a_new_profile_until_it_opts_in_again(sessions):
    ann = await add_customer(sessions, email="ann@example.com", traits={})
    async with transaction(sessions) as session:
        await subscriptions.unsubscribe(session, ann, subscriptions.ALL_GROUPS, "one_click")
    await _erase(sessions, ann)
    assert await rows_naming(sessions, "ann@example.com") == {}
    again = await add_customer(sessions, email="ann@example.com", traits={})

    async with sessions() as session:
        shown = await subscriptions.preferences(session, again)
        marketing = await subscriptions.blocked(session, {again: "ann@example.com"}, "marketing", None)
    assert shown.unsubscribed_from_all and marketing == {again: "address suppressed (unsubscribed)"}

    # Their own re-subscribe on the preference page lifts it, digest and all.
    async with transaction(sessions) as session:
        shown = await subscriptions.save_preferences(session, again, set(), unsubscribe_all=False)
    assert not shown.unsubscribed_from_all
    assert await _entries(sessions) == []
    async with sessions() as session:
        assert await subscriptions.blocked(session, {again: "ann@example.com"}, "marketing", None) == {}


async def test_suppressing_an_address_again_makes_one_entry_with_the_stronger_reason(
    sessions, client, admin_headers
):
    ann = await add_customer(sessions, email="ann@example.com", traits={})
    async with transaction(sessions) as session:
        await subscriptions.suppress_address(
            session, "ann@example.com", "bounced", "550 ann@example.com unknown"
        )
    await _erase(sessions, ann)

    async with transaction(sessions) as session:
        await subscriptions.suppress_address(session, "ann@example.com", "unsubscribed", "preference page")
    assert await _entries(sessions) == [("ann@example.com", "bounced")]

    # An admin lifting the address's suppression lifts it whole.
    async with transaction(sessions) as session:
        await subscriptions.forget_addresses(session, ["ann@example.com"])
    response = await client.delete("/api/suppressions/ann@example.com", headers=admin_headers)
    assert response.status_code == 204 and await _entries(sessions) == []


async def test_erasure_hashes_the_suppressions_of_every_address_the_person_had(sessions):
    """Their current address, one an identify call gave before, and one the ledger mailed them at."""
    async with transaction(sessions) as session:
        for email in ("first@example.com", "now@example.com"):
            await events.ingest(
                session, [IdentifyCall(userId="ann", traits={"email": email})], source_key_id=None
            )
    async with sessions() as session:
        ann = await session.scalar(select(Customer.id).where(Customer.user_id == "ann"))
    async with transaction(sessions) as session:
        session.add(
            Message(
                idempotency_key="k1",
                message_id="<k1@journeys>",
                customer_id=ann,
                to_address="mailed@example.com",
                status="failed",
            )
        )
        for address in ("first@example.com", "now@example.com", "mailed@example.com"):
            await subscriptions.suppress_address(session, address, "bounced", f"550 {address}")
    await _erase(sessions, ann)

    assert [await rows_naming(sessions, name) for name in ("first@", "now@", "mailed@")] == [{}, {}, {}]
    async with sessions() as session:
        reasons = await subscriptions.blocked(
            session,
            {1: "first@example.com", 2: "now@example.com", 3: "mailed@example.com"},
            "transactional",
            None,
        )
    assert reasons == {i: "address suppressed (bounced)" for i in (1, 2, 3)}


@pytest.mark.parametrize(("before", "now"), [("unsubscribed", "bounced"), ("bounced", "unsubscribed")])
async def test_an_address_suppressed_while_its_person_is_erased_stays_suppressed(
    engine, sessions, before, now
):
    """On PostgreSQL the erasure may commit while the new suppression is half done (SQLite runs one
    write at a time): it had read the entry naming the address, the erasure renamed it to its digest,
    then it took the digest for one to fold in and deleted it. A bounce after an unsubscribe failed
    (the entry it raised was gone); an unsubscribe after a bounce left the address suppressed nowhere."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite runs one write transaction at a time")
    ann = await add_customer(sessions, email="ann@example.com", traits={})
    async with transaction(sessions) as session:
        await subscriptions.suppress_address(session, "ann@example.com", before, None)

    erasure = None
    async with transaction(sessions) as session:
        read_entry = session.scalar

        async def scalar(statement, *args, **kwargs):
            nonlocal erasure
            if isinstance(statement, Delete) and erasure is None:  # the entry is read; the erasure goes
                erasure = asyncio.create_task(_erase(sessions, ann))
                await wait_for(lambda: done_or_waiting_on_a_lock(erasure, engine))
            return await read_entry(statement, *args, **kwargs)

        session.scalar = scalar
        await subscriptions.suppress_address(session, "ann@example.com", now, None)
    await erasure

    again = await add_customer(sessions, email="ann@example.com", traits={})
    async with sessions() as session:
        reasons = await subscriptions.blocked(session, {again: "ann@example.com"}, "transactional", None)
    assert reasons == ({again: "address suppressed (bounced)"})
