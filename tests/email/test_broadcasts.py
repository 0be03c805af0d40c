"""Broadcasts through the API and the BroadcastWorkflow: batches, suppression, schedule, pause, cancel."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone

import pytest
from aiosmtpd.smtp import SMTP
from sqlalchemy import select

from activities.contracts import SendEmailRequest
from domain.broadcasts import service as broadcasts
from domain.broadcasts.models import Broadcast
from domain.db import transaction
from domain.email.models import Message
from domain.segments import service as segments
from domain.segments.schemas import SegmentIn
from domain.subscriptions import service as subscriptions
from runtime import smtp_capture
from tests.email.helpers import add_customer, add_customers, add_template, run_activity
from workflows.broadcast import PAUSED_RECHECK, BroadcastInput, BroadcastProgress, BroadcastWorkflow


async def _create(client, headers, **spec):
    body = {
        "name": "Spring sale",
        "template_id": "welcome",
        "audience": {"kind": "all"},
        "batch_size": 7,
    } | spec
    r = await client.post("/api/broadcasts", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


async def test_broadcast_reaches_everyone_once_except_the_suppressed(
    client, marketer_headers, sessions, capture, temporal
):
    ids = await add_customers(sessions, 30)
    await add_template(sessions, subscription_group="offers")
    async with transaction(sessions) as session:
        await subscriptions.unsubscribe(session, ids[3], "offers", "one_click")
        await subscriptions.suppress_address(session, "c5@example.com", "complained", None)
        # an entry an erasure left: only the address's digest
        await subscriptions.suppress_address(session, "c8@example.com", "bounced", None)
        await subscriptions.forget_addresses(session, ["c8@example.com"])
    created = await _create(client, marketer_headers, id="spring")
    assert created["status"] == "scheduled" and created["template_version"] == 1
    result = await temporal.client.get_workflow_handle(
        "broadcast/spring", result_type=BroadcastProgress
    ).result()
    assert (result.status, result.sent, result.skipped, result.failed) == ("completed", 27, 3, 0)
    messages = await capture.wait_for_count(27)
    per_recipient = Counter(m["envelope_to"][0] for m in messages)
    assert len(per_recipient) == 27 and set(per_recipient.values()) == {1}
    assert not {"c3@example.com", "c5@example.com", "c8@example.com"} & set(per_recipient)
    assert {m["subject"] for m in messages if m["envelope_to"] == ["c7@example.com"]} == {"Hi Name7"}
    assert all(dict(m["headers"]).get("List-Unsubscribe-Post") for m in messages)
    status = (await client.get("/api/broadcasts/spring", headers=marketer_headers)).json()
    assert (status["status"], status["sent"], status["skipped"], status["cursor"]) == (
        "completed",
        27,
        3,
        ids[-1],
    )


@pytest.mark.parametrize("subject", ["Hi {{ traits.first_name }}", "Spring sale"])
async def test_the_ledger_keeps_the_subject_each_recipient_of_a_broadcast_got(
    client, marketer_headers, sessions, capture, temporal, subject
):
    ids = await add_customers(sessions, 5)
    await add_template(sessions, subject=subject)
    async with transaction(sessions) as session:
        await subscriptions.suppress_address(session, "c4@example.com", "complained", None)
    await _create(client, marketer_headers, id="spring", batch_size=2)
    await temporal.client.get_workflow_handle("broadcast/spring").result()
    got = {m["envelope_to"][0]: m["subject"] for m in await capture.wait_for_count(4)}
    want = {f"c{i}@example.com": subject.replace("{{ traits.first_name }}", f"Name{i}") for i in range(4)}
    assert got == want
    ledger = (await client.get("/api/messages", params={"limit": 50}, headers=marketer_headers)).json()
    recorded = {m["to_address"]: (m["status"], m["subject"]) for m in ledger}
    assert recorded == {a: ("sent", s) for a, s in want.items()} | {"c4@example.com": ("skipped", None)}
    assert {m["customer_id"] for m in ledger} == set(ids)


async def test_a_broadcast_a_journey_send_and_a_preview_of_one_template_are_the_same_message(
    client, marketer_headers, sessions, capture, temporal, activities
):
    cid = await add_customer(sessions, email="ann@example.com", traits={"first_name": "Ann"})
    await add_template(sessions, subscription_group="weekly-news")  # the group is named "Weekly-News"
    request = SendEmailRequest(
        idempotency_key="wf/1/send/1", customer_id=cid, template_id="welcome", template_version=1
    )
    journey_id = (await run_activity(activities.send_email, request)).message_id
    await _create(
        client, marketer_headers, id="spring", audience={"kind": "customers", "customer_ids": [cid]}
    )
    await temporal.client.get_workflow_handle("broadcast/spring").result()
    [journey] = [m for m in await capture.wait_for_count(2) if m["message_id"] == journey_id]
    [broadcast] = [m for m in capture.messages() if m["message_id"] != journey_id]
    r = await client.post(
        "/api/templates/welcome/preview", json={"customer_id": cid}, headers=marketer_headers
    )
    preview = r.json()

    def same_for_every_send(headers):  # the values that name one send (id, boundary, second) aside
        return [(n, "" if n in ("Message-ID", "Date") else re.sub("boundary=.*", "", v)) for n, v in headers]

    assert same_for_every_send(journey["headers"]) == same_for_every_send(broadcast["headers"])
    assert "subscribed to Weekly-News." in preview["html"]
    untracked = [re.sub(r'<img src="[^"]+/o/[^"]+"[^>]*>', "", m["html"]) for m in (journey, broadcast)]

    def links_aside(body):  # the preview's unsubscribe and preference links act for no one
        return re.sub(r"/(u|preferences)/[\w.-]+", r"/\1/TOKEN", body)

    assert [links_aside(html) for html in untracked] == [links_aside(preview["html"])] * 2
    assert "/u/TOKEN" in links_aside(preview["html"])
    assert journey["text"] == broadcast["text"]
    assert links_aside(journey["text"]) == links_aside(preview["text"])


async def test_broadcast_to_a_customer_list_at_a_later_time(
    client, marketer_headers, sessions, capture, temporal
):
    ids = await add_customers(sessions, 10)
    await add_template(sessions)
    at = datetime.now(UTC) + timedelta(hours=6)
    created = await _create(
        client,
        marketer_headers,
        id="later",
        audience={"kind": "customers", "customer_ids": ids[:4]},
        send_at=at.astimezone(timezone(timedelta(hours=2))).isoformat(),  # sent with an offset
    )
    # Answered in UTC, as GET answers it (the create echoed the offset it was sent with).
    got = (await client.get("/api/broadcasts/later", headers=marketer_headers)).json()
    assert created["send_at"] == got["send_at"] and datetime.fromisoformat(got["send_at"]) == at
    assert datetime.fromisoformat(created["send_at"]).utcoffset() == timedelta(0)
    handle = temporal.client.get_workflow_handle("broadcast/later", result_type=BroadcastProgress)
    assert (await handle.query(BroadcastWorkflow.progress)).status == "scheduled"
    assert capture.handler.received == 0
    await temporal.sleep(timedelta(hours=7))  # skipped time
    result = await handle.result()
    assert (result.status, result.sent) == ("completed", 4)
    assert sorted(m["envelope_to"][0] for m in await capture.wait_for_count(4)) == [
        f"c{i}@example.com" for i in range(4)
    ]


async def test_broadcast_to_a_customer_list_goes_on_past_a_page_in_which_nobody_has_an_address(
    client, marketer_headers, sessions, capture, temporal
):
    from sqlalchemy import update

    from domain.customers.models import Customer

    ids = await add_customers(sessions, 10)
    async with transaction(sessions) as session:  # the first page of three: nobody has an address
        await session.execute(update(Customer).where(Customer.id.in_(ids[:3])).values(email=None))
    await add_template(sessions)
    missing = ids[-1] + 1000  # and one listed id is nobody (erased, or a typo)
    await _create(
        client,
        marketer_headers,
        id="listed",
        audience={"kind": "customers", "customer_ids": [missing, *reversed(ids)]},
        batch_size=3,
    )
    handle = temporal.client.get_workflow_handle("broadcast/listed", result_type=BroadcastProgress)
    result = await handle.result()
    assert (result.status, result.sent) == ("completed", 7)
    delivered = Counter(m["envelope_to"][0] for m in await capture.wait_for_count(7))
    assert delivered == Counter(f"c{i}@example.com" for i in range(3, 10))
    status = (await client.get("/api/broadcasts/listed", headers=marketer_headers)).json()
    assert (status["status"], status["sent"], status["cursor"]) == ("completed", 7, missing)


def _capture_holds_after(capture, n: int) -> asyncio.Event:
    """The capture takes ``n`` messages, then holds every other until the returned event is set, so a
    step the test takes meanwhile lands while the broadcast is under way however slow the machine.
    Call it before the first send: each SMTP connection takes the handler's hook when it opens."""
    release, taken = asyncio.Event(), 0
    store = capture.handler.handle_DATA

    async def hold(server, session, envelope):
        nonlocal taken
        taken += 1
        if taken > n:
            await release.wait()
        return await store(server, session, envelope)

    capture.handler.handle_DATA = hold
    return release


async def test_pause_holds_and_cancel_stops_a_rate_limited_broadcast(
    client, marketer_headers, sessions, capture, temporal
):
    await add_customers(sessions, 60)
    await add_template(sessions)
    # The batch plans pages ahead of its sends (about 45 messages here): a pause that came a second
    # late would find the whole audience planned, so the capture holds the rest until it is recorded.
    paused = _capture_holds_after(capture, 3)
    await _create(client, marketer_headers, id="slow", batch_size=5, rate_per_second=10)
    await capture.wait_for_count(3)
    r = await client.post("/api/broadcasts/slow/pause", headers=marketer_headers)
    paused.set()
    assert r.status_code == 200 and r.json()["status"] == "paused"
    handle = temporal.client.get_workflow_handle("broadcast/slow", result_type=BroadcastProgress)

    async def paused():
        return (await handle.query(BroadcastWorkflow.progress)).status == "paused"

    deadline = asyncio.get_running_loop().time() + 20
    while not await paused():
        assert asyncio.get_running_loop().time() < deadline, "the workflow never paused"
        await asyncio.sleep(0.05)
    held = capture.handler.received
    assert held < 60
    assert (await client.post("/api/broadcasts/slow/pause", headers=marketer_headers)).status_code == 409
    r = await client.post("/api/broadcasts/slow/cancel", headers=marketer_headers)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    result = await handle.result()
    assert result.status == "cancelled"
    assert capture.handler.received == held == result.sent
    status = (await client.get("/api/broadcasts/slow", headers=marketer_headers)).json()
    assert status["status"] == "cancelled" and status["sent"] == held


async def test_pause_then_resume_finishes_the_broadcast(
    client, marketer_headers, sessions, capture, temporal
):
    await add_customers(sessions, 20)
    await add_template(sessions)
    paused = _capture_holds_after(capture, 1)  # else all 20 could be sent before the pause (0.5 s)
    await _create(client, marketer_headers, id="pr", batch_size=5, rate_per_second=40)
    await capture.wait_for_count(1)
    r = await client.post("/api/broadcasts/pr/pause", headers=marketer_headers)
    paused.set()
    assert r.status_code == 200
    assert (await client.post("/api/broadcasts/pr/resume", headers=marketer_headers)).status_code == 200
    result = await temporal.client.get_workflow_handle("broadcast/pr", result_type=BroadcastProgress).result()
    assert (result.status, result.sent) == ("completed", 20)
    assert len({m["envelope_to"][0] for m in await capture.wait_for_count(20)}) == 20


async def test_a_broadcast_resumed_whose_workflow_was_never_told_sends_the_rest_on_its_own(
    client, marketer_headers, sessions, capture, temporal
):
    await add_customers(sessions, 80)
    await add_template(sessions)
    paused = _capture_holds_after(capture, 1)
    await _create(client, marketer_headers, id="lost", batch_size=5, rate_per_second=100)
    await capture.wait_for_count(1)  # pages are planned about 45 messages ahead of the sends
    r = await client.post("/api/broadcasts/lost/pause", headers=marketer_headers)
    paused.set()
    assert r.status_code == 200
    handle = temporal.client.get_workflow_handle("broadcast/lost", result_type=BroadcastProgress)
    deadline = asyncio.get_running_loop().time() + 20
    while (await handle.query(BroadcastWorkflow.progress)).status != "paused":
        assert asyncio.get_running_loop().time() < deadline, "the workflow never paused"
        await asyncio.sleep(0.05)
    sent_while_paused = capture.handler.received
    # The API stored the resume and stopped before it signalled the workflow.
    async with transaction(sessions) as session:
        await broadcasts.change(session, "lost", "resume")

    await temporal.sleep(PAUSED_RECHECK + timedelta(seconds=1))  # the paused workflow looks again
    with temporal.auto_time_skipping_disabled():  # real time while the batches send
        result = await asyncio.wait_for(handle.result(), 30)

    assert sent_while_paused < 80
    assert (result.status, result.sent) == ("completed", 80)
    assert len({m["envelope_to"][0] for m in await capture.wait_for_count(80)}) == 80
    status = (await client.get("/api/broadcasts/lost", headers=marketer_headers)).json()
    assert (status["status"], status["sent"]) == ("completed", 80)


async def test_a_broadcast_cancelled_whose_workflow_was_never_told_ends_without_sending_more(
    client, marketer_headers, sessions, capture, temporal
):
    await add_customers(sessions, 80)
    await add_template(sessions)
    paused = _capture_holds_after(capture, 1)
    await _create(client, marketer_headers, id="gone", batch_size=5, rate_per_second=100)
    await capture.wait_for_count(1)
    assert (await client.post("/api/broadcasts/gone/pause", headers=marketer_headers)).status_code == 200
    paused.set()
    handle = temporal.client.get_workflow_handle("broadcast/gone", result_type=BroadcastProgress)
    deadline = asyncio.get_running_loop().time() + 20
    while (await handle.query(BroadcastWorkflow.progress)).status != "paused":
        assert asyncio.get_running_loop().time() < deadline, "the workflow never paused"
        await asyncio.sleep(0.05)
    held = capture.handler.received
    async with transaction(sessions) as session:  # stored; the signal never came
        await broadcasts.change(session, "gone", "cancel")

    await temporal.sleep(PAUSED_RECHECK + timedelta(seconds=1))
    with temporal.auto_time_skipping_disabled():
        result = await asyncio.wait_for(handle.result(), 30)

    assert result.status == "cancelled"
    assert capture.handler.received == held < 80


async def test_broadcast_to_a_segment_reaches_its_members_only(
    client, marketer_headers, sessions, capture, temporal
):
    await add_customers(sessions, 12)
    await add_template(sessions)
    async with transaction(sessions) as session:
        rule = {"trait": "first_name", "op": "in", "value": ["Name2", "Name5", "Name9"]}
        await segments.create(session, SegmentIn(id="picked", name="Picked", rule=rule))
    await _create(
        client, marketer_headers, id="to-segment", audience={"kind": "segment", "segment_id": "picked"}
    )
    result = await temporal.client.get_workflow_handle(
        "broadcast/to-segment", result_type=BroadcastProgress
    ).result()
    assert (result.status, result.sent) == ("completed", 3)
    assert sorted(m["envelope_to"][0] for m in await capture.wait_for_count(3)) == [
        "c2@example.com",
        "c5@example.com",
        "c9@example.com",
    ]


async def test_the_segment_of_a_broadcast_still_to_send_cannot_be_deleted(
    client, marketer_headers, sessions, capture, temporal
):
    """The broadcast reads the segment's members when it runs: with the segment deleted before its send
    time it finished having sent nothing."""
    await add_customers(sessions, 6)
    await add_template(sessions)
    async with transaction(sessions) as session:
        rule = {"trait": "first_name", "op": "in", "value": ["Name1", "Name4"]}
        await segments.create(session, SegmentIn(id="picked", name="Picked", rule=rule))
    send_at = (datetime.now(UTC) + timedelta(hours=6)).isoformat()
    audience = {"kind": "segment", "segment_id": "picked"}
    await _create(client, marketer_headers, id="later", audience=audience, send_at=send_at)
    also = {"id": "fans", "name": "Fans", "rule": {"segment": "picked"}}
    assert (await client.post("/api/segments", json=also, headers=marketer_headers)).status_code == 201

    refused = await client.delete("/api/segments/picked", headers=marketer_headers)

    assert refused.status_code == 409, refused.text
    assert refused.json()["error"] == "segment_in_use"
    # every user in one answer: the broadcast and the segment that refers to it
    assert refused.json()["detail"] == {
        "problem": "segment 'picked' is the audience of broadcasts still to send, used by other segments",
        "broadcasts": ["later"],
        "segments": ["fans"],
    }
    deleted = await client.delete("/api/segments/fans", headers=marketer_headers)
    assert deleted.status_code == 204
    await temporal.sleep(timedelta(hours=7))  # skipped time
    handle = temporal.client.get_workflow_handle("broadcast/later", result_type=BroadcastProgress)
    assert ((result := await handle.result()).status, result.sent) == ("completed", 2)
    assert sorted(m["envelope_to"][0] for m in await capture.wait_for_count(2)) == [
        "c1@example.com",
        "c4@example.com",
    ]
    # Sent: nothing reads the segment any more.
    assert (await client.delete("/api/segments/picked", headers=marketer_headers)).status_code == 204


@pytest.mark.parametrize(
    ("patch", "field"),
    [({}, "template_id"), ({"template_version": 1}, "template_version"), ({"subscription_group": "x"}, "")],
)
async def test_a_broadcast_with_a_transactional_template_is_refused_naming_it(
    client, marketer_headers, sessions, patch, field
):
    await add_template(sessions, id="notice", category="transactional")
    body = {"name": "Notice", "template_id": "notice", "audience": {"kind": "all"}} | patch
    r = await client.post("/api/broadcasts", json=body, headers=marketer_headers)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert detail["field"] == (field or "template_id") and "transactional" in detail["problem"]
    assert (await client.get("/api/broadcasts", headers=marketer_headers)).json() == []


async def test_a_broadcast_stored_with_a_transactional_template_still_honours_unsubscribes(
    sessions, settings, capture, temporal
):
    """A broadcast an earlier release accepted with a transactional template is sent as marketing."""
    ids = await add_customers(sessions, 4)
    await add_template(sessions, id="notice", category="transactional")
    async with transaction(sessions) as session:
        await subscriptions.unsubscribe(session, ids[1], subscriptions.ALL_GROUPS, "one_click")
        await subscriptions.suppress_address(session, "c2@example.com", "complained", None)
        session.add(
            Broadcast(
                id="legacy",
                name="Notice",
                template_id="notice",
                template_version=1,
                subscription_group=None,
                audience={"kind": "all"},
                slot=0,
                batch_size=500,
                status="scheduled",
                cursor=0,
                sent=0,
                skipped=0,
                failed=0,
                created_at=datetime.now(UTC),
            )
        )
    result = await temporal.client.execute_workflow(
        BroadcastWorkflow.run,
        BroadcastInput(broadcast_id="legacy"),
        id="broadcast/legacy",
        task_queue=settings.temporal_task_queue,
        result_type=BroadcastProgress,
    )
    assert (result.status, result.sent, result.skipped) == ("completed", 2, 2)
    messages = await capture.wait_for_count(2)
    assert sorted(m["envelope_to"][0] for m in messages) == ["c0@example.com", "c3@example.com"]
    assert all(dict(m["headers"]).get("List-Unsubscribe") for m in messages)
    async with sessions() as session:
        rows = await session.execute(
            select(Message.to_address, Message.error).where(Message.status == "skipped")
        )
        skipped = {address: error for address, error in rows}
    assert skipped == {
        "c1@example.com": "address suppressed (unsubscribed)",
        "c2@example.com": "address suppressed (complained)",
    }
    await asyncio.sleep(0.2)
    assert len(capture.messages()) == 2


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"template_id": "nope"}, "template_id"),
        ({"template_version": 9}, "template_version"),
        ({"audience": {"kind": "customers", "customer_ids": []}}, "audience.customers.customer_ids"),
        ({"audience": {"kind": "segment", "segment_id": "vip"}}, "audience.segment_id"),
        ({"send_at": "2030-01-01T09:00:00"}, "send_at"),
        ({"rate_per_second": 0}, "rate_per_second"),
    ],
)
async def test_bad_broadcasts_are_refused_naming_the_field(client, marketer_headers, sessions, patch, field):
    await add_template(sessions)
    body = {"name": "x", "template_id": "welcome", "audience": {"kind": "all"}} | patch
    r = await client.post("/api/broadcasts", json=body, headers=marketer_headers)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    fields = [d["field"] for d in detail] if isinstance(detail, list) else [detail["field"]]
    assert any(f.startswith(field) for f in fields), fields
    assert (await client.get("/api/broadcasts", headers=marketer_headers)).json() == []


async def test_local_time_broadcast_sends_at_nine_in_each_recipients_timezone(
    client, marketer_headers, sessions, capture, temporal
):

    await add_template(sessions)
    zones = {
        "tokyo@example.com": "Asia/Tokyo",
        "paris@example.com": "Europe/Paris",
        "nyc@example.com": "America/New_York",
    }
    for address, zone in [*zones.items(), ("nozone@example.com", None)]:
        await add_customer(sessions, email=address, traits={}, timezone=zone)
    day = (datetime.now(UTC) + timedelta(days=3)).date()
    await _create(
        client,
        marketer_headers,
        id="nine",
        local_send_at=f"{day}T09:00:00",
        default_timezone="Europe/Paris",
    )
    handle = temporal.client.get_workflow_handle("broadcast/nine", result_type=BroadcastProgress)
    await temporal.sleep(timedelta(days=5))  # skipped time
    result = await handle.result()
    from zoneinfo import ZoneInfo

    expected = sorted(
        {
            datetime(day.year, day.month, day.day, 9, tzinfo=ZoneInfo(z)).astimezone(UTC)
            for z in zones.values()
        }
    )
    assert [datetime.fromisoformat(at) for at in result.slots] == expected
    assert (result.status, result.sent) == ("completed", 4)
    assert len(await capture.wait_for_count(4)) == 4
    # sent in the order the zones reach 9:00 (each send time's batch is recorded before the next starts);
    # the customer without a timezone goes with the default, Paris
    async with transaction(sessions) as session:
        rows = (await session.execute(select(Message.to_address, Message.sent_at))).all()
    sent_at = dict(rows)
    assert sent_at["tokyo@example.com"] < sent_at["paris@example.com"] < sent_at["nyc@example.com"]
    assert sent_at["tokyo@example.com"] < sent_at["nozone@example.com"] < sent_at["nyc@example.com"]


async def test_a_local_time_broadcast_shows_times_in_its_default_zone_to_customers_without_a_known_one(
    client, marketer_headers, sessions, capture, temporal
):
    """Sent at 09:00 Berlin time, a customer without a zone (or with one nobody knows) reads the sale's
    end in Berlin time too, not in UTC; a customer with a zone reads it in theirs."""

    await add_template(
        sessions, html="<p>Sale ends at {{ traits.ends | time }} ({{ traits.ends | date('yyyy-MM-dd') }})</p>"
    )
    zones = {
        "none@example.com": None,
        "mars@example.com": "Mars/Olympus",
        "nyc@example.com": "America/New_York",
    }
    for address, zone in zones.items():
        await add_customer(sessions, email=address, traits={"ends": "2030-06-01T22:30:00Z"}, timezone=zone)
    day = (datetime.now(UTC) + timedelta(days=3)).date()
    await _create(
        client,
        marketer_headers,
        id="berlin",
        local_send_at=f"{day}T09:00:00",
        default_timezone="Europe/Berlin",
    )
    handle = temporal.client.get_workflow_handle("broadcast/berlin", result_type=BroadcastProgress)
    await temporal.sleep(timedelta(days=5))  # skipped time
    assert (await handle.result()).sent == 3

    shown = {
        m["to"]: re.search(r"Sale ends at [^<]*", m["html"]).group() for m in await capture.wait_for_count(3)
    }
    # 22:30 UTC is 00:30 the next day in Berlin (summer time), 18:30 in New York
    berlin = "Sale ends at 12:30\u202fAM (2030-06-02)"
    assert shown == {
        "none@example.com": berlin,
        "mars@example.com": berlin,
        "nyc@example.com": "Sale ends at 6:30\u202fPM (2030-06-01)",
    }


async def test_a_broadcast_sent_at_once_shows_times_in_its_default_zone_to_customers_without_a_known_one(
    client, marketer_headers, sessions, capture, temporal
):
    await add_template(sessions, html="<p>Sale ends at {{ traits.ends | datetime('yyyy-MM-dd HH:mm') }}</p>")
    for address, zone in {"none@example.com": None, "nyc@example.com": "America/New_York"}.items():
        await add_customer(sessions, email=address, traits={"ends": "2030-06-01T22:30:00Z"}, timezone=zone)

    created = await _create(client, marketer_headers, id="now", default_timezone="Europe/Berlin")

    assert created["default_timezone"] == "Europe/Berlin"
    handle = temporal.client.get_workflow_handle("broadcast/now", result_type=BroadcastProgress)
    assert (await handle.result()).sent == 2
    shown = {
        m["to"]: re.search(r"Sale ends at [^<]*", m["html"]).group() for m in await capture.wait_for_count(2)
    }
    assert shown == {
        "none@example.com": "Sale ends at 2030-06-02 00:30",
        "nyc@example.com": "Sale ends at 2030-06-01 18:30",
    }


async def test_local_time_broadcast_reaches_customers_in_timezones_that_appear_after_it_was_planned(
    client, marketer_headers, sessions, capture, temporal
):
    from zoneinfo import ZoneInfo

    from sqlalchemy import update

    from domain.customers.models import Customer

    def customer(address, zone):
        now = datetime.now(UTC)
        return Customer(
            user_id=address, email=address, traits={}, timezone=zone, first_seen_at=now, last_seen_at=now
        )

    await add_template(sessions)
    async with transaction(sessions) as session:
        session.add_all([customer(f"{who}@example.com", "Europe/Paris") for who in ("paris", "mover")])
    day = (datetime.now(UTC) + timedelta(days=3)).date()
    await _create(client, marketer_headers, id="nine", local_send_at=f"{day}T09:00:00")
    handle = temporal.client.get_workflow_handle("broadcast/nine", result_type=BroadcastProgress)
    await temporal.sleep(timedelta(days=1))  # planned: one send time, Paris's 9:00; nothing sent yet
    assert capture.handler.received == 0
    async with transaction(sessions) as session:
        # Someone signs up in Tokyo, whose 9:00 comes before Paris's, and a Parisian moves to Los
        # Angeles, whose 9:00 comes after: no send time was planned for either zone.
        session.add(customer("tokyo@example.com", "Asia/Tokyo"))
        await session.execute(
            update(Customer)
            .where(Customer.email == "mover@example.com")
            .values(timezone="America/Los_Angeles")
        )
    await temporal.sleep(timedelta(days=4))
    result = await handle.result()
    assert (result.status, result.sent) == ("completed", 3)
    delivered = Counter(m["envelope_to"][0] for m in await capture.wait_for_count(3))
    assert delivered == Counter(["paris@example.com", "tokyo@example.com", "mover@example.com"])

    def nine(zone):
        return datetime(day.year, day.month, day.day, 9, tzinfo=ZoneInfo(zone)).astimezone(UTC)

    # Tokyo's 9:00 had passed when its zone was found (after Paris's send): sent at once, then; Los
    # Angeles got its own 9:00.
    paris, tokyo, los_angeles = (datetime.fromisoformat(at) for at in result.slots)
    assert paris == nine("Europe/Paris") <= tokyo < nine("America/Los_Angeles") == los_angeles
    async with transaction(sessions) as session:
        sent_at = dict((await session.execute(select(Message.to_address, Message.sent_at))).all())
    assert sent_at["paris@example.com"] < sent_at["tokyo@example.com"] < sent_at["mover@example.com"]


class _TryLaterOnce(smtp_capture.MaildirHandler):
    """A server that answers 451 (try later) the first time it sees each of some recipients."""

    def __init__(self, directory, refuse: set[str]):
        super().__init__(directory)
        self.refuse = set(refuse)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            self.refuse.discard(address)
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"


async def test_recipients_the_server_asks_to_retry_get_their_email_once(
    client, marketer_headers, settings, sessions, temporal
):
    await add_customers(sessions, 40)
    await add_template(sessions)
    later = {"c3@example.com", "c5@example.com", "c38@example.com"}  # two pages: two retries
    handler = _TryLaterOnce(settings.mailbox_dir, later)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="try-later"), host=settings.smtp_host, port=settings.smtp_port
    )
    try:
        await _create(client, marketer_headers, id="retry", batch_size=6)
        result = await temporal.client.get_workflow_handle(
            "broadcast/retry", result_type=BroadcastProgress
        ).result()
    finally:
        server.close()
        await server.wait_closed()
    assert (result.status, result.sent, result.skipped, result.failed) == ("completed", 40, 0, 0)
    assert not handler.refuse  # each was refused once, then taken
    assert handler.duplicates == 0  # what the server took before the retry was recorded, not re-sent
    stored = Counter(m["envelope_to"][0] for m in smtp_capture.read_mailbox(settings.mailbox_dir, limit=1000))
    assert len(stored) == 40 and set(stored.values()) == {1}
    status = (await client.get("/api/broadcasts/retry", headers=marketer_headers)).json()
    assert (status["status"], status["sent"], status["failed"]) == ("completed", 40, 0)


async def test_a_mailbox_the_relay_cannot_carry_fails_in_a_broadcast_but_is_not_suppressed(
    client, marketer_headers, sessions, capture_without_smtputf8, temporal
):
    capture = capture_without_smtputf8
    from sqlalchemy import update

    from domain.customers.models import Customer

    ids = await add_customers(sessions, 5)
    async with transaction(sessions) as session:  # the relay offers no SMTPUTF8
        await session.execute(update(Customer).where(Customer.id == ids[2]).values(email="zoé@example.com"))
    await add_template(sessions)
    await _create(client, marketer_headers, id="intl")
    result = await temporal.client.get_workflow_handle(
        "broadcast/intl", result_type=BroadcastProgress
    ).result()
    assert (result.status, result.sent, result.failed) == ("completed", 4, 1)
    assert len(await capture.wait_for_count(4)) == 4
    async with transaction(sessions) as session:
        assert await subscriptions.blocked(session, {ids[2]: "zoé@example.com"}, "transactional", None) == {}
