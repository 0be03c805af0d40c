"""The send_email activity against the capture server: right content, once, and nothing to the suppressed."""

from __future__ import annotations

import pytest
from temporalio.exceptions import ApplicationError

from activities.contracts import SendEmailRequest
from activities.email import EmailActivities
from activities.smtp import Mailer
from domain.db import transaction
from domain.email import service as email
from domain.subscriptions import service as subscriptions
from tests.email.helpers import add_customer, add_template, run_activity


@pytest.fixture
def settings(settings):
    return settings.model_copy(
        update={"postal_address": "1 Main St, Springfield", "mail_from": "Acme <news@acme.example>"}
    )


def _req(customer_id: int, key: str = "wf/1/send/1", template: str = "welcome", **kw) -> SendEmailRequest:
    return SendEmailRequest(
        idempotency_key=key, customer_id=customer_id, template_id=template, template_version=1, **kw
    )


async def test_email_arrives_once_with_the_right_name_and_unsubscribe_headers(sessions, activities, capture):
    cid = await add_customer(sessions, email="ann@example.com", traits={"first_name": "Ann"})
    await add_template(sessions, subscription_group="newsletter")
    first = await run_activity(activities.send_email, _req(cid))
    again = await run_activity(activities.send_email, _req(cid))  # a retried activity
    assert first.status == again.status == "sent" and first.message_id == again.message_id
    [msg] = await capture.wait_for_count(1)
    assert capture.handler.received == 1
    assert msg["envelope_to"] == ["ann@example.com"] and msg["envelope_from"] == "news@acme.example"
    assert msg["subject"] == "Hi Ann" and "Hello Ann" in msg["html"] and "Hello Ann" in msg["text"]
    assert msg["message_id"] == first.message_id
    headers = dict(msg["headers"])
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert headers["List-Unsubscribe"].startswith(
        f"<{activities._factory.unsubscribe_url(cid, 'newsletter')}"
    )
    assert "1 Main St, Springfield" in msg["html"] and "1 Main St, Springfield" in msg["text"]
    async with transaction(sessions) as session:
        [row] = await email.list_messages(session, customer_id=cid)
    assert row.status == "sent" and row.to_address == "ann@example.com" and row.subject == "Hi Ann"


async def test_transactional_email_has_no_unsubscribe_and_ignores_marketing_opt_out(
    sessions, activities, capture
):
    cid = await add_customer(sessions, email="bob@example.com", traits={"first_name": "Bob"})
    await add_template(sessions, id="receipt", category="transactional", subject="Your receipt")
    async with transaction(sessions) as session:
        await subscriptions.unsubscribe(session, cid, subscriptions.ALL_GROUPS, "one_click")
    result = await run_activity(activities.send_email, _req(cid, template="receipt"))
    assert result.status == "sent"
    [msg] = await capture.wait_for_count(1)
    assert "List-Unsubscribe" not in dict(msg["headers"])


async def test_suppressed_or_unsubscribed_customers_get_nothing(sessions, activities, capture):
    ann = await add_customer(sessions, email="ann@example.com", traits={"first_name": "Ann"})
    bob = await add_customer(sessions, email="bob@example.com", traits={"first_name": "Bob"})
    cy = await add_customer(sessions, email="cy@example.com", traits={"first_name": "Cy"})
    await add_template(sessions, subscription_group="offers")
    async with transaction(sessions) as session:
        await subscriptions.unsubscribe(session, ann, "offers", "one_click")
        await subscriptions.suppress_address(session, "bob@example.com", "bounced", "550 no such user")
    assert (await run_activity(activities.send_email, _req(ann, key="k-ann"))).status == "skipped"
    assert (await run_activity(activities.send_email, _req(bob, key="k-bob"))).status == "skipped"
    assert (await run_activity(activities.send_email, _req(cy, key="k-cy"))).status == "sent"
    [msg] = await capture.wait_for_count(1)
    assert msg["envelope_to"] == ["cy@example.com"]
    assert capture.handler.received == 1


@pytest.mark.parametrize(
    "first_name", ["Ann\r\nBcc: eve@evil.example", "Ann\nX-Injected: yes", "Ann\x0bBcc: eve@evil.example"]
)
async def test_header_injection_through_traits_fails_without_retry(sessions, activities, capture, first_name):
    cid = await add_customer(sessions, email="ann@example.com", traits={"first_name": first_name})
    await add_template(sessions)
    with pytest.raises(ApplicationError) as err:
        await run_activity(activities.send_email, _req(cid))
    assert err.value.non_retryable
    assert capture.handler.received == 0
    async with transaction(sessions) as session:
        [row] = await email.list_messages(session, customer_id=cid)
    assert row.status == "failed" and "line break" in row.error


class _RefusingHandler:
    """An SMTP server that refuses one mailbox for good (550) and accepts the rest."""

    def __init__(self):
        self.accepted = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("gone@"):
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.accepted.extend(envelope.rcpt_tos)
        return "250 OK"


async def test_permanent_refusal_fails_without_retry_and_suppresses_the_address(settings, sessions):
    import asyncio

    from aiosmtpd.smtp import SMTP

    handler = _RefusingHandler()
    server = await asyncio.get_running_loop().create_server(
        lambda: SMTP(handler), host=settings.smtp_host, port=settings.smtp_port
    )
    mailer = Mailer(settings, size=1)
    try:
        acts = EmailActivities(settings, sessions, mailer)
        gone = await add_customer(sessions, email="gone@example.com", traits={"first_name": "G"})
        ok = await add_customer(sessions, email="ok@example.com", traits={"first_name": "O"})
        await add_template(sessions)
        with pytest.raises(ApplicationError) as err:
            await run_activity(acts.send_email, _req(gone, key="k-gone"))
        assert err.value.non_retryable and "550" in str(err.value)
        assert (await run_activity(acts.send_email, _req(ok, key="k-ok"))).status == "sent"
        assert handler.accepted == ["ok@example.com"]
        async with transaction(sessions) as session:
            reasons = await subscriptions.blocked(session, {gone: "gone@example.com"}, "transactional", None)
        assert reasons == {gone: "address suppressed (bounced)"}
        # a later step to the bounced address is skipped without touching the server
        assert (await run_activity(acts.send_email, _req(gone, key="k-gone-2"))).status == "skipped"
    finally:
        await mailer.close()
        server.close()
        await server.wait_closed()


async def test_erasure_leaves_a_bounced_address_nowhere_and_a_new_profile_at_it_is_still_not_mailed(
    settings, sessions, activities, client, admin_headers, write_key, capture
):
    """A hard bounce's SMTP error names the mailbox, and the suppression list named it too; erasing the
    person must leave it in no table, yet the address stays suppressed: a new profile with it (the
    person back, or someone else) is not mailed, for the same reason."""
    import asyncio

    from aiosmtpd.smtp import SMTP
    from sqlalchemy import select

    from domain.customers.models import Customer
    from domain.email.models import Message
    from tests.conftest import free_port, rows_naming

    refusing = settings.model_copy(update={"smtp_port": free_port()})  # the capture has the usual port
    server = await asyncio.get_running_loop().create_server(
        lambda: SMTP(_RefusingHandler()), host=refusing.smtp_host, port=refusing.smtp_port
    )
    mailer = Mailer(refusing, size=1)
    try:
        gone = await add_customer(sessions, email="gone@example.com", traits={"first_name": "Gina"})
        await add_template(sessions)
        with pytest.raises(ApplicationError):
            await run_activity(EmailActivities(refusing, sessions, mailer).send_email, _req(gone))
    finally:
        await mailer.close()
        server.close()
        await server.wait_closed()
    async with transaction(sessions) as session:
        [row] = await email.list_messages(session, customer_id=gone)
    assert row.status == "failed" and "gone@example.com" in row.error  # the bounce, as the relay said it
    assert "suppressions" in await rows_naming(sessions, "gone@example.com")

    response = await client.delete(f"/api/customers/{gone}?reason=asked", headers=admin_headers)
    assert response.status_code == 200, response.text
    async with transaction(sessions) as session:
        [row] = (await session.scalars(select(Message))).all()
        ledger = repr([getattr(row, c.key) for c in Message.__table__.columns])
    assert row.status == "failed" and row.customer_id is None and "Gina" not in ledger
    assert await rows_naming(sessions, "gone@example.com") == {}
    assert await rows_naming(sessions, "gone@") == {}

    # Someone signs up with the address again (written in another case; ingestion normalises it).
    identify = {"userId": "new-gina", "traits": {"email": "Gone@Example.COM", "first_name": "Gina"}}
    assert (await client.post("/v1/identify", json=identify, auth=(write_key, ""))).status_code == 200
    async with sessions() as session:
        again = await session.scalar(select(Customer.id).where(Customer.user_id == "new-gina"))
    sent = await run_activity(activities.send_email, _req(again, key="k-again", category="transactional"))
    assert (sent.status, sent.detail) == ("skipped", "address suppressed (bounced)")
    assert capture.handler.received == 0


async def test_a_mailbox_our_relay_cannot_carry_fails_the_send_but_is_not_suppressed(
    sessions, activities, capture_without_smtputf8
):
    """A non-ASCII mailbox through a relay without SMTPUTF8: the message fails
    for good, but the address did not bounce, so it stays sendable once the relay can carry it."""
    zoe = await add_customer(sessions, email="zoé@example.com", traits={"first_name": "Zoé"})
    await add_template(sessions)
    with pytest.raises(ApplicationError) as err:
        await run_activity(activities.send_email, _req(zoe, key="k-zoe"))
    assert err.value.non_retryable and "SMTPUTF8" in str(err.value)
    async with transaction(sessions) as session:
        [row] = await email.list_messages(session, customer_id=zoe)
        reasons = await subscriptions.blocked(session, {zoe: "zoé@example.com"}, "transactional", None)
    assert row.status == "failed" and "SMTPUTF8" in row.error
    assert reasons == {}


async def test_a_slow_template_fails_its_send_clearly_and_the_next_send_works(sessions, activities, capture):
    cid = await add_customer(sessions, email="ann@example.com", traits={"first_name": "Ann"})
    slow = "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}"
    await add_template(sessions, id="slow", html=slow)
    await add_template(sessions, id="welcome")
    with pytest.raises(ApplicationError) as err:
        await run_activity(activities.send_email, _req(cid, key="k-slow", template="slow"))
    assert err.value.non_retryable and "longer than 1s" in str(err.value)
    assert (await run_activity(activities.send_email, _req(cid, key="k-ok"))).status == "sent"
    [msg] = await capture.wait_for_count(1)
    assert msg["subject"] == "Hi Ann"


class _SenderRefusingHandler:
    """A relay that will not take mail from our sender (a configuration problem on our side)."""

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        return "553 5.7.1 sender address rejected: not owned by user"


async def test_a_relay_refusing_our_sender_fails_the_send_but_suppresses_no_recipient(settings, sessions):
    """A 5xx to MAIL FROM says nothing about the mailbox: suppressing it as bounced would stop all
    later mail to every recipient the misconfigured relay saw."""
    import asyncio

    from aiosmtpd.smtp import SMTP

    server = await asyncio.get_running_loop().create_server(
        lambda: SMTP(_SenderRefusingHandler()), host=settings.smtp_host, port=settings.smtp_port
    )
    mailer = Mailer(settings, size=1)
    try:
        acts = EmailActivities(settings, sessions, mailer)
        cid = await add_customer(sessions, email="ann@example.com", traits={"first_name": "Ann"})
        await add_template(sessions)
        with pytest.raises(ApplicationError) as err:
            await run_activity(acts.send_email, _req(cid, key="k-ann"))
        assert "553" in str(err.value)
        async with transaction(sessions) as session:
            assert await subscriptions.blocked(session, {cid: "ann@example.com"}, "transactional", None) == {}
            assert await subscriptions.list_suppressions(session, 10, None) == []
    finally:
        await mailer.close()
        server.close()
        await server.wait_closed()
