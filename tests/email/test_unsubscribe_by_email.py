"""Unsubscribing by email: the mailto a sent marketing email offers, followed by a mail client and
delivered to the inbound endpoint (or, in dev, through the SMTP capture), unsubscribes as the
one-click link does, once."""

from __future__ import annotations

import asyncio
import re
from email.message import EmailMessage
from email.policy import SMTP
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib
import pytest
from sqlalchemy import func, select

from activities.contracts import SendEmailRequest
from domain.customers import service as customers
from domain.db import transaction
from domain.email.delivery import MessageFactory
from domain.events.models import Event
from domain.subscriptions import service as subscriptions
from domain.subscriptions.events import SUBSCRIPTION_CHANGED
from domain.subscriptions.models import Subscription, UnsubscribeMail
from runtime import smtp_capture
from runtime.unsubscribe_mailbox import UnsubscribeMailbox
from tests.conftest import free_port, make_key, rows_naming
from tests.email.helpers import UNSUBSCRIBE_MAILBOX, add_customer, add_template, run_activity

MAILBOX = UNSUBSCRIBE_MAILBOX
ENDPOINT = "/api/webhooks/unsubscribe-email"
RAW = {"Content-Type": "message/rfc822"}

pytestmark = pytest.mark.unsubscribe_mailbox


@pytest.fixture
def inbound(inbound_key) -> dict[str, str]:
    """An inbound key's post of a raw message."""
    return RAW | inbound_key


async def _sent_mailto(sessions, activities, capture, customer_id: int) -> str:
    """The mailto of the List-Unsubscribe header of a marketing email really sent to the customer."""
    request = SendEmailRequest(
        idempotency_key=f"wf/{customer_id}/send/1",
        customer_id=customer_id,
        template_id="welcome",
        template_version=1,
    )
    assert (await run_activity(activities.send_email, request)).status == "sent"
    [msg] = await capture.wait_for_count(1)
    [mailto] = re.findall(r"<(mailto:[^>]+)>", dict(msg["headers"])["List-Unsubscribe"])
    return mailto


def _followed(
    mailto: str,
    sender: str,
    *,
    body: str = "",
    subject: str | None = None,
    message_id: str = "<r1@mail.example>",
) -> bytes:
    """The message a mail client writes when the person follows the mailto (RFC 6068)."""
    parts = urlsplit(mailto)
    message = EmailMessage()
    message["From"] = sender
    message["To"] = unquote(parts.path)
    message["Subject"] = parse_qs(parts.query)["subject"][0] if subject is None else subject
    message["Message-ID"] = message_id
    message.set_content(body)
    return message.as_bytes(policy=SMTP)


async def _changes(sessions, customer_id: int) -> list[dict]:
    async with sessions() as session:
        rows = await session.scalars(
            select(Event.properties)
            .where(Event.name == SUBSCRIPTION_CHANGED, Event.customer_id == customer_id)
            .order_by(Event.id)
        )
        return list(rows)


async def _blocked(sessions, customer_id: int, address: str) -> dict:
    async with transaction(sessions) as session:
        return await subscriptions.blocked(session, {customer_id: address}, "marketing", "newsletter")


async def test_the_mailto_of_a_sent_email_unsubscribes_its_customer_once(
    client, sessions, activities, capture, inbound
):
    ann = await add_customer(sessions, email="ann@example.com", traits={"first_name": "Ann"})
    bob = await add_customer(sessions, email="bob@example.com", traits={"first_name": "Bob"})
    await add_template(sessions, subscription_group="newsletter")
    mailto = await _sent_mailto(sessions, activities, capture, ann)
    assert mailto.startswith(f"mailto:{MAILBOX}?subject=unsubscribe%20")
    request = _followed(mailto, "Ann <ann@example.com>")

    r = await client.post(ENDPOINT, content=request, headers=inbound)
    assert r.status_code == 200, r.text
    assert r.json() | {"detail": None} == {
        "status": "unsubscribed",
        "customer_id": ann,
        "group_id": "newsletter",
        "changed": True,
        "repeat": False,
        "reason": None,
        "detail": None,
    }
    change = {"group_id": "newsletter", "subscribed": False, "source": "mailto"}
    assert await _changes(sessions, ann) == [change]
    assert await _blocked(sessions, ann, "ann@example.com") == {ann: "unsubscribed from newsletter"}
    assert await _blocked(sessions, bob, "bob@example.com") == {}  # nobody else

    # The provider delivers the same message again, or the person sends it twice: nothing more.
    for _ in range(2):
        again = await client.post(ENDPOINT, content=request, headers=inbound)
        assert again.status_code == 200 and again.json()["status"] == "unsubscribed"
        assert again.json()["changed"] is False
    assert await _changes(sessions, ann) == [change]
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Subscription)) == 1


async def _resubscribe(sessions, customer_id: int) -> None:
    async with transaction(sessions) as session:
        await subscriptions.save_preferences(session, customer_id, {"newsletter"}, False)


async def test_a_retry_after_re_subscribing_changes_nothing_and_a_new_mail_unsubscribes_again(
    client, sessions, activities, capture, inbound
):
    """A provider delivers a mail again (a timeout on its side) after the person re-subscribed: the
    same Message-ID, or the same bytes when the mail has none, is acknowledged and changes nothing.
    A new mail with the same request is a new wish and is honoured."""
    ann = await add_customer(sessions, email="ann@example.com", traits={"first_name": "Ann"})
    await add_template(sessions, subscription_group="newsletter")
    mailto = await _sent_mailto(sessions, activities, capture, ann)
    with_id = _followed(mailto, "ann@example.com", message_id="<r1@mail.example>")
    without_id = _followed(mailto, "ann@example.com", body="stop please").replace(
        b"Message-ID: <r1@mail.example>\r\n", b""
    )
    assert b"Message-ID" not in without_id
    unsubscribed = {ann: "unsubscribed from newsletter"}
    for first in [with_id, without_id]:
        r = await client.post(ENDPOINT, content=first, headers=inbound)
        assert (r.status_code, r.json()["changed"], r.json()["repeat"]) == (200, True, False), r.text
        assert await _blocked(sessions, ann, "ann@example.com") == unsubscribed
        await _resubscribe(sessions, ann)
        retry = await client.post(ENDPOINT, content=first, headers=inbound)
        assert retry.status_code == 200, retry.text
        assert retry.json() | {"detail": None} == {
            "status": "unsubscribed",
            "customer_id": ann,
            "group_id": "newsletter",
            "changed": False,
            "repeat": True,
            "reason": None,
            "detail": None,
        }
        assert await _blocked(sessions, ann, "ann@example.com") == {}  # still subscribed

    another = _followed(mailto, "ann@example.com", message_id="<r2@mail.example>")
    r = await client.post(ENDPOINT, content=another, headers=inbound)
    assert (r.status_code, r.json()["changed"], r.json()["repeat"]) == (200, True, False), r.text
    assert await _blocked(sessions, ann, "ann@example.com") == unsubscribed
    assert [c["subscribed"] for c in await _changes(sessions, ann)] == [False, True, False, True, False]


async def test_concurrent_deliveries_of_one_mail_act_on_it_once(
    client, sessions, activities, capture, inbound
):
    """A provider that timed out posts the mail again while the first post is still being processed:
    one of them acts on it, the others are acknowledged as repeats, none fails."""
    ann = await add_customer(sessions, email="ann@example.com", traits={"first_name": "Ann"})
    await add_template(sessions, subscription_group="newsletter")
    mailto = await _sent_mailto(sessions, activities, capture, ann)
    request = _followed(mailto, "ann@example.com")
    posts = [client.post(ENDPOINT, content=request, headers=inbound) for _ in range(4)]
    answers = await asyncio.gather(*posts)
    assert [r.status_code for r in answers] == [200] * 4, [r.text for r in answers]
    outcomes = sorted((r.json()["changed"], r.json()["repeat"]) for r in answers)
    assert outcomes == [(False, True)] * 3 + [(True, False)]
    assert len(await _changes(sessions, ann)) == 1
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(UnsubscribeMail)) == 1


async def test_an_erasure_leaves_nothing_of_the_mails_acted_on_that_names_the_person(
    client, sessions, activities, capture, inbound
):
    """The record of mails acted on keeps digests only: a Message-ID that holds the person's address
    is found nowhere, before or after their erasure; a retry after it is ignored."""
    ann = await add_customer(sessions, email="ann@example.com", traits={"first_name": "Ann"})
    await add_template(sessions, subscription_group="newsletter")
    mailto = await _sent_mailto(sessions, activities, capture, ann)
    request = _followed(mailto, "Ann <ann@example.com>", message_id="<1733.ann@example.com>")
    assert (await client.post(ENDPOINT, content=request, headers=inbound)).json()["changed"] is True
    assert "unsubscribe_mails" not in await rows_naming(sessions, "1733.ann@example.com")
    async with transaction(sessions) as session:
        await customers.erase(session, ann, by_key_id=None, reason="asked")
    assert await rows_naming(sessions, "ann@example.com") == {}
    retry = await client.post(ENDPOINT, content=request, headers=inbound)
    assert (retry.status_code, retry.json()["reason"]) == (200, "customer_erased"), retry.text


async def test_a_mail_from_before_a_merge_answers_the_profile_it_unsubscribed(
    client, sessions, settings, inbound
):
    """The email went to a visitor who later logged in (merged into the known profile): the request
    unsubscribes the known profile, and the answer names that profile, not the merged-away id."""
    visitor = await add_customer(sessions, email="ann@example.com", traits={})
    known = await add_customer(sessions, email="ann.known@example.com", traits={})
    await add_template(sessions, subscription_group="newsletter")
    token = MessageFactory(settings).unsubscribe_url(visitor, "newsletter").rpartition("/u/")[2]
    async with transaction(sessions) as session:
        await customers.merge(session, source_id=visitor, target_id=known)
    request = _followed(f"mailto:{MAILBOX}", "ann@example.com", subject=f"unsubscribe {token}")
    for changed, repeat in [(True, False), (False, True)]:  # and a provider's retry of it
        r = await client.post(ENDPOINT, content=request, headers=inbound)
        assert r.status_code == 200, r.text
        assert (r.json()["customer_id"], r.json()["changed"], r.json()["repeat"]) == (known, changed, repeat)
    assert await _blocked(sessions, known, "ann.known@example.com") == {known: "unsubscribed from newsletter"}


async def test_what_a_mail_client_may_do_to_the_request_still_reads(
    client, sessions, activities, capture, inbound
):
    """A reply prefix, an RFC 2047 encoded subject, or the token only in the text (a client that drops a
    mailto's subject): each is the same request."""
    ann = await add_customer(sessions, email="ann@example.com", traits={"first_name": "Ann"})
    await add_template(sessions, subscription_group="newsletter")
    mailto = await _sent_mailto(sessions, activities, capture, ann)
    subject = parse_qs(urlsplit(mailto).query)["subject"][0]
    encoded = _followed(mailto, "ann@example.com", subject="Désabonner: " + subject)
    assert b"=?utf-8?" in encoded.partition(b"\r\n\r\n")[0]
    in_text = _followed(mailto, "ann@example.com", subject="", body=f"Please remove me.\n\n{subject}\n")
    for message, changed in [(encoded, True), (in_text, False)]:
        r = await client.post(ENDPOINT, content=message, headers=inbound)
        assert r.status_code == 200 and r.json()["status"] == "unsubscribed", r.text
        assert r.json()["changed"] is changed
    assert len(await _changes(sessions, ann)) == 1


async def test_mail_that_asks_nothing_we_can_act_on_is_acknowledged_and_changes_nothing(
    client, sessions, settings, inbound
):
    """The mailbox is public: a written request without the token, a forged token, a test send's token
    are answered 200 'ignored' with the reason (a provider would deliver a 4xx again and again)."""
    ann = await add_customer(sessions, email="ann@example.com", traits={})
    bob = await add_customer(sessions, email="bob@example.com", traits={})
    factory = MessageFactory(settings)
    token = factory.unsubscribe_url(ann, "newsletter").rpartition("/u/")[2]
    forged = factory.unsubscribe_url(bob, "newsletter").rpartition("/u/")[2].split(".")[0]
    test_send = factory.unsubscribe_url(subscriptions.NO_CUSTOMER, "newsletter").rpartition("/u/")[2]
    preferences = factory.preferences_url(ann).rpartition("/")[2]
    cases = {
        "no_token": "Please unsubscribe me",
        "bad_token": f"unsubscribe {forged}.{token.split('.')[1]}",
        "test_send": f"unsubscribe {test_send}",
    }
    cases_more = [("bad_token", f"unsubscribe {preferences}"), ("bad_token", f"unsubscribe {token[:-2]}AA")]
    for reason, subject in [*cases.items(), *cases_more]:
        message = _followed(f"mailto:{MAILBOX}", "ann@example.com", subject=subject)
        r = await client.post(ENDPOINT, content=message, headers=inbound)
        assert r.status_code == 200, (subject, r.text)
        assert r.json()["status"] == "ignored" and r.json()["reason"] == reason, (subject, r.json())
    assert await _changes(sessions, ann) == await _changes(sessions, bob) == []


async def test_bad_requests_are_refused_naming_the_problem_and_write_nothing(
    client, sessions, settings, inbound
):
    ann = await add_customer(sessions, email="ann@example.com", traits={})
    token = MessageFactory(settings).unsubscribe_url(ann, "newsletter").rpartition("/u/")[2]
    good = _followed(f"mailto:{MAILBOX}", "ann@example.com", subject=f"unsubscribe {token}")
    oversize = _followed(
        f"mailto:{MAILBOX}", "ann@example.com", subject=f"unsubscribe {token}", body="x" * 1_048_576
    )
    json_headers = inbound | {"Content-Type": "application/json"}
    text_headers = inbound | {"Content-Type": "text/plain"}
    cases = [
        (b"", inbound, 400, "not_a_message"),
        (b'{"subject": "unsubscribe ' + token.encode() + b'"}', inbound, 400, "not_a_message"),
        (b"\x00\xff\xfe garbage " + token.encode(), inbound, 400, "not_a_message"),
        (good, json_headers, 403, "not_a_message"),  # labelled Postmark's JSON: 403 stops its retries
        (good, text_headers, 415, "unsupported_media_type"),
        (good, {k: v for k, v in inbound.items() if k != "Content-Type"}, 415, "unsupported_media_type"),
        (oversize, inbound, 413, "too_large"),
    ]
    for body, headers, status, code in cases:
        r = await client.post(ENDPOINT, content=body, headers=headers)
        assert r.status_code == status, (body[:40], r.status_code, r.text)
        assert r.json()["error"] == code and r.json()["detail"]["problem"], r.json()

    # A body longer than its Content-Length says is cut off at the limit as it is read.
    async def chunks():
        for _ in range(10):
            yield good + b"x" * 200_000

    r = await client.post(ENDPOINT, content=chunks(), headers=inbound)
    assert r.status_code == 413 and r.json()["error"] == "too_large"
    assert await _changes(sessions, ann) == []


async def test_only_an_inbound_key_delivers_mail_and_it_opens_nothing_else(client, sessions, inbound):
    message = _followed(f"mailto:{MAILBOX}", "ann@example.com", subject="hello")
    admin = await make_key(sessions, role="admin")
    write = await make_key(sessions, write=True)
    secret = inbound["Authorization"].removeprefix("Bearer ")
    assert secret.startswith("ik_")
    for headers, status in [
        (RAW, 401),
        (RAW | {"Authorization": "Bearer nope"}, 401),
        (RAW | {"Authorization": f"Bearer {admin}"}, 403),
        (RAW | {"Authorization": f"Bearer {write}"}, 403),
    ]:
        r = await client.post(ENDPOINT, content=message, headers=headers)
        assert r.status_code == status, (headers, r.text)
    # As a provider's webhook URL carries it: https://user:key@host/... (or the key as the user name)
    for auth_ in [("postmark", secret), (secret, "")]:
        r = await client.post(ENDPOINT, content=message, headers=RAW, auth=auth_)
        assert r.status_code == 200 and r.json()["reason"] == "no_token", r.text
    assert (await client.get("/api/keys", headers=inbound)).status_code == 403
    assert (await client.post("/v1/track", json={}, auth=(secret, ""))).status_code == 403

    created = await client.post(
        "/api/keys",
        json={"name": "x", "kind": "inbound", "role": "admin"},
        headers={"Authorization": f"Bearer {admin}"},
    )
    assert created.status_code == 422 and created.json()["detail"]["field"] == "role"


async def test_in_dev_mail_to_the_mailbox_through_the_capture_unsubscribes(
    settings, sessions, activities, capture
):
    """``journeys dev`` hands the capture's mail for the unsubscribe mailbox to the processor; the SMTP
    answer comes once it is processed."""
    ann = await add_customer(sessions, email="ann@example.com", traits={"first_name": "Ann"})
    await add_template(sessions, subscription_group="newsletter")
    mailto = await _sent_mailto(sessions, activities, capture, ann)
    port = free_port()
    mailbox = UnsubscribeMailbox.of(settings, sessions)
    server, handler = await smtp_capture.start(
        settings.smtp_host, port, settings.data_dir / "dev-mailbox", unsubscribe_mailbox=mailbox
    )
    try:
        send = {"sender": "ann@example.com", "hostname": settings.smtp_host, "port": port}
        elsewhere = _followed(mailto, "ann@example.com", message_id="<r1@mail.example>")
        await aiosmtplib.send(elsewhere, recipients=["someone@acme.example"], **send)
        assert handler.received == 1 and await _changes(sessions, ann) == []
        request = _followed(mailto, "ann@example.com", message_id="<r2@mail.example>")
        await aiosmtplib.send(request, recipients=[MAILBOX.upper()], **send)  # any case, as SMTP allows
        assert handler.received == 2
        change = {"group_id": "newsletter", "subscribed": False, "source": "mailto"}
        assert await _changes(sessions, ann) == [change]
        spam = _followed("mailto:" + MAILBOX, "x@y.example", subject="Cheap watches", message_id="<r3@y>")
        await aiosmtplib.send(spam, recipients=[MAILBOX], **send)
        assert handler.received == 3 and await _changes(sessions, ann) == [change]  # no token: logged
    finally:
        server.close()
        await server.wait_closed()


async def test_mail_the_stdlib_parser_trips_on_still_reads_its_subject_and_never_fails(
    client, sessions, settings, inbound
):
    """Anyone can mail the mailbox: a Content-Type the stdlib raises on, parts nested past its recursion
    limit, an unknown charset, a subject of thousands of encoded words. Each is read (its subject at
    least) and answered, never a 500."""
    ann = await add_customer(sessions, email="ann@example.com", traits={})
    token = MessageFactory(settings).unsubscribe_url(ann, subscriptions.ALL_GROUPS).rpartition("/u/")[2]
    head = f"From: ann@example.com\r\nTo: {MAILBOX}\r\nSubject: unsubscribe {token}\r\n".encode()
    nested = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i) for i in range(3000)
    )
    hostile = [
        head + b"Content-Type: text/plain; a*0*\r\n\r\nplease",  # IndexError in the stdlib
        head + nested + b"Content-Type: text/plain\r\n\r\nplease",  # RecursionError in the stdlib
        head + b'Content-Type: text/plain; charset="x-unknown"\r\n\r\nplease',
        head.replace(b"Subject: ", b"Subject: " + b"=?utf-8?q?a?= " * 60_000 + b"\r\n ") + b"\r\nhi",
    ]
    outcomes = []
    for message in hostile:
        r = await client.post(ENDPOINT, content=message, headers=inbound)
        assert r.status_code == 200, (message[:200], r.text)
        outcomes.append((r.json()["status"], r.json()["changed"]))
    # The encoded words fill the bound a header is parsed to, before the token: it is not found.
    assert outcomes == [
        ("unsubscribed", True),
        ("unsubscribed", False),
        ("unsubscribed", False),
        ("ignored", False),
    ]
    assert len(await _changes(sessions, ann)) == 2  # the choice for all marketing, and the address
