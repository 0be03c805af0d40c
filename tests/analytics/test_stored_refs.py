"""Opens and clicks reach the campaign numbers through the message refs both tables store (migration
0035): written when a message is recorded and when an engagement is ingested, and still right after the
customer is merged into another profile or erased."""

from __future__ import annotations

from sqlalchemy import select

from domain.broadcasts import repository as broadcasts
from domain.customers import service as customers
from domain.db import transaction, utcnow
from domain.email import service as email
from domain.email import tracking
from domain.email.models import Message
from domain.events import service as events
from domain.events.models import Event
from domain.events.schemas import TrackCall
from tests.email.helpers import add_customer, add_template

KEY = "journey/welcome/customer/1/0/hello/1"


async def _template_numbers(client, headers) -> dict:
    got = await client.get("/api/analytics/templates", headers=headers)
    assert got.status_code == 200, got.text
    [numbers] = got.json()["templates"]
    return {k: numbers[k] for k in ("sent", "opened", "clicked")}


async def _refs(sessions) -> tuple[str | None, list[tuple[str | None, str | None]]]:
    async with transaction(sessions) as session:
        message = await session.scalar(select(Message.message_ref))
        stored = await session.execute(select(Event.name, Event.message_ref).order_by(Event.id))
        return message, [tuple(r) for r in stored]


async def test_an_open_and_a_click_count_for_their_message_after_a_merge_and_not_after_an_erasure(
    sessions, client, marketer_headers
):
    await add_template(sessions, id="sale", name="Sale")
    ann = await add_customer(sessions, email="ann@example.com", traits={})
    other = await add_customer(sessions, email="ann.other@example.com", traits={})
    ref = tracking.message_ref(KEY, "sale")
    async with transaction(sessions) as session:
        await email.claim_message(
            session, idempotency_key=KEY, message_id="<1@test>", customer_id=ann, template_id="sale"
        )
        await email.finish_message(session, KEY, "sent", None)
        # as the open pixel and the click redirect record them (through ingestion)
        assert await tracking.record(session, tracking.OPENED, ann, ref)
        assert await tracking.record(session, tracking.CLICKED, ann, ref, "https://shop.example/")
    assert await _refs(sessions) == (ref, [(tracking.OPENED, ref), (tracking.CLICKED, ref)])
    assert await _template_numbers(client, marketer_headers) == {"sent": 1, "opened": 1, "clicked": 1}

    async with transaction(sessions) as session:  # the message and its engagement move to `other`
        await customers.merge(session, source_id=ann, target_id=other)
    assert await _template_numbers(client, marketer_headers) == {"sent": 1, "opened": 1, "clicked": 1}

    async with transaction(sessions) as session:  # the send stays in the ledger, the events go
        await customers.erase(session, other, by_key_id=None, reason=None)
    assert await _refs(sessions) == (ref, [])
    assert await _template_numbers(client, marketer_headers) == {"sent": 1, "opened": 0, "clicked": 0}


async def test_ingestion_stores_a_string_ref_that_can_name_a_message_and_nothing_else(sessions):
    await add_customer(sessions, email="ann@example.com", traits={})
    refs = {
        "text": "0123456789abcdef01234567~sale",
        "number": 12,
        "object": {"ref": "x~y"},
        "too long": "x" * 97,
        "longest": "y" * 96,
    }
    calls = [
        TrackCall(userId="ann@example.com", event=tracking.OPENED, properties={"message_ref": v}, messageId=k)
        for k, v in refs.items()
    ] + [TrackCall(userId="ann@example.com", event="Order Completed", properties={}, messageId="none")]
    async with transaction(sessions) as session:
        stored = await events.ingest(session, calls, source_key_id=None)
    assert stored.stored == len(calls)
    async with transaction(sessions) as session:
        rows = dict((await session.execute(select(Event.message_id, Event.message_ref))).all())
    assert rows == {
        "text": refs["text"],
        "number": None,
        "object": None,
        "too long": None,
        "longest": refs["longest"],
        "none": None,
    }


async def test_a_broadcast_batch_records_each_message_with_its_own_ref(sessions):
    ids = [await add_customer(sessions, email=f"c{i}@example.com", traits={}) for i in range(3)]
    keys = [f"broadcast/spring/customer/{i}" for i in ids]
    rows = [
        {
            "idempotency_key": key,
            "message_id": f"<{key}@test>",
            "customer_id": cid,
            "template_id": "promo",
            "status": "pending",
            "attempts": 0,
            "meta": {},
            "created_at": utcnow(),
        }
        for key, cid in zip(keys, ids, strict=True)
    ]
    async with transaction(sessions) as session:  # one statement for the batch
        await broadcasts.claim_messages(session, rows)
    async with transaction(sessions) as session:
        stored = dict((await session.execute(select(Message.idempotency_key, Message.message_ref))).all())
    assert stored == {key: tracking.message_ref(key, "promo") for key in keys}
