"""A journey send's claim commits before the message goes out, so an erasure can commit while it is on
its way (it cannot be recalled). What the send records afterwards keeps nothing of the person: no error
quoting the address (in the ledger or in the workflow's history), no plain suppression entry for a
bounce (a digest still suppresses the address), nothing when the relay could not carry it.

The mailer below erases the customer at the moment the message is handed to it: the claim has
committed, the outcome is not recorded yet."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from temporalio.exceptions import ApplicationError

from activities.contracts import SendEmailRequest
from activities.email import EmailActivities
from activities.smtp import NotABounce, PermanentFailure
from domain.customers import service as customers
from domain.db import transaction
from domain.email.models import Message
from domain.subscriptions import service as subscriptions
from domain.subscriptions.models import Suppression
from tests.conftest import rows_naming
from tests.email.helpers import add_customer, add_template, run_activity

REFUSED = "(550, '5.1.1 <annabel@example.com>: no such user')"


class _ErasingMailer:
    """Erases the recipient when asked to send, then accepts the message or refuses it with ``fails``."""

    def __init__(self, sessions, fails: Exception | None = None):
        self._sessions = sessions
        self._fails = fails
        self.customer_id: int | None = None
        self.sent_to: list[str] = []

    async def send(self, sender: str, recipient: str, data: bytes) -> None:
        async with self._sessions() as session:  # the claim committed: its row is there to see
            row = await session.scalar(select(Message))
            assert (row.status, row.to_address) == ("pending", recipient)
        async with transaction(self._sessions) as session:
            await customers.hold_for_erasure(session, self.customer_id)
            await customers.erase(session, self.customer_id, by_key_id=None, reason="asked to be forgotten")
        self.sent_to.append(recipient)
        if self._fails is not None:
            raise self._fails


async def _send(settings, sessions, mailer: _ErasingMailer):
    mailer.customer_id = await add_customer(
        sessions, email="annabel@example.com", traits={"first_name": "Annabel"}
    )
    await add_template(sessions)
    req = SendEmailRequest(
        idempotency_key="journey/j1/customer/1/e1/send/1",
        customer_id=mailer.customer_id,
        template_id="welcome",
        template_version=1,
        journey_id="j1",
        node_id="send",
    )
    return await run_activity(EmailActivities(settings, sessions, mailer).send_email, req)


async def _ledger(sessions) -> list[tuple]:
    async with sessions() as session:
        rows = (await session.scalars(select(Message))).all()
        return [(m.customer_id, m.to_address, m.status, m.subject, m.error, m.meta) for m in rows]


async def _suppressions(sessions) -> list[tuple]:
    async with sessions() as session:
        rows = (await session.scalars(select(Suppression))).all()
        return [(s.address, s.reason, s.detail) for s in rows]


async def _assert_nothing_of_annabel(sessions) -> None:
    assert await rows_naming(sessions, "annabel@") == {}
    assert await rows_naming(sessions, "Annabel") == {}


async def test_a_bounce_after_the_erasure_keeps_no_error_and_suppresses_only_a_digest(settings, sessions):
    mailer = _ErasingMailer(sessions, fails=PermanentFailure(REFUSED))
    with pytest.raises(ApplicationError) as err:
        await _send(settings, sessions, mailer)

    assert mailer.sent_to == ["annabel@example.com"]  # on its way when the erasure committed
    assert err.value.non_retryable and err.value.type == "Undeliverable"
    assert await _ledger(sessions) == [(None, None, "failed", None, customers.ERASED_ERROR, {})]
    digest = "sha256:" + customers.sha256("annabel@example.com")
    assert await _suppressions(sessions) == [(digest, "bounced", None)]
    await _assert_nothing_of_annabel(sessions)
    # The workflow's history keeps the failure's message and its cause: neither names the person.
    assert err.value.message == customers.ERASED_ERROR and err.value.__cause__ is None

    # The address stays suppressed: whoever has it next is not mailed.
    again = await add_customer(sessions, email="annabel@example.com", traits={})
    async with sessions() as session:
        blocked = await subscriptions.blocked(session, {again: "annabel@example.com"}, "transactional", None)
    assert blocked == {again: "address suppressed (bounced)"}


async def test_a_refusal_that_is_not_a_bounce_after_the_erasure_keeps_no_error_and_suppresses_nothing(
    settings, sessions
):
    mailer = _ErasingMailer(sessions, fails=NotABounce(f"relay cannot carry annabel@example.com: {REFUSED}"))
    with pytest.raises(ApplicationError) as err:
        await _send(settings, sessions, mailer)

    assert await _ledger(sessions) == [(None, None, "failed", None, customers.ERASED_ERROR, {})]
    assert await _suppressions(sessions) == []
    await _assert_nothing_of_annabel(sessions)
    assert err.value.message == customers.ERASED_ERROR and err.value.__cause__ is None


async def test_a_delivery_recorded_after_the_erasure_keeps_nothing_of_the_person(settings, sessions):
    """The delivery is recorded (sent, counted) on the anonymised row, which it leaves anonymous."""
    mailer = _ErasingMailer(sessions)
    result = await _send(settings, sessions, mailer)

    assert result.status == "sent" and mailer.sent_to == ["annabel@example.com"]
    assert await _ledger(sessions) == [(None, None, "sent", None, None, {})]
    assert await _suppressions(sessions) == []
    await _assert_nothing_of_annabel(sessions)


async def test_a_bounce_of_a_customer_not_erased_keeps_the_error_and_the_address(settings, sessions):
    """The counterpart: without an erasure the relay's words and the address are kept, as before."""

    class Refusing(_ErasingMailer):
        async def send(self, sender, recipient, data):
            raise PermanentFailure(REFUSED)

    with pytest.raises(ApplicationError) as err:
        await _send(settings, sessions, Refusing(sessions))
    assert err.value.message == REFUSED and isinstance(err.value.__cause__, PermanentFailure)
    [(customer_id, to, status, _, error, _)] = await _ledger(sessions)
    assert (customer_id is not None, to, status, error) == (True, "annabel@example.com", "failed", REFUSED)
    assert await _suppressions(sessions) == [("annabel@example.com", "bounced", REFUSED)]


# -- provider feedback arriving after the erasure ---------------------------------------------------------


async def _feedback(client, admin_headers, *events: dict) -> None:
    batch = {"events": events}
    response = await client.post("/api/webhooks/email-feedback", json=batch, headers=admin_headers)
    assert response.status_code == 200, response.text


async def test_feedback_about_an_erased_persons_address_suppresses_it_only_as_a_digest(
    settings, sessions, client, admin_headers
):
    """Ann was mailed and then erased; Bob had unsubscribed and was erased (his entry became a digest);
    Carol is a customer. The provider reports a bounce for Ann, a complaint for Bob and one for Carol
    later: Ann's and Bob's addresses are suppressed as digests without the provider's words, Carol's
    by name, as always."""

    class Accepting(_ErasingMailer):
        async def send(self, sender, recipient, data):
            self.sent_to.append(recipient)

    mailer = Accepting(sessions)
    assert (await _send(settings, sessions, mailer)).status == "sent"
    ann = mailer.customer_id
    bob = await add_customer(sessions, email="bob@example.com", traits={})
    carol = await add_customer(sessions, email="carol@example.com", traits={})
    async with transaction(sessions) as session:
        await subscriptions.unsubscribe(session, bob, subscriptions.ALL_GROUPS, "one_click")
    for erased in (ann, bob):
        response = await client.delete(f"/api/customers/{erased}?reason=asked", headers=admin_headers)
        assert response.status_code == 200, response.text

    await _feedback(
        client,
        admin_headers,
        {"type": "bounce", "email": "Annabel@Example.com", "detail": REFUSED},
        {"type": "complaint", "email": "bob@example.com", "detail": "abuse report for bob@example.com"},
        {"type": "complaint", "email": "carol@example.com", "detail": "abuse report"},
    )

    def digest(address):
        return "sha256:" + customers.sha256(address)

    assert sorted(await _suppressions(sessions)) == sorted(
        [
            (digest("annabel@example.com"), "bounced", None),
            (digest("bob@example.com"), "complained", None),
            ("carol@example.com", "complained", "abuse report"),
        ]
    )
    await _assert_nothing_of_annabel(sessions)
    assert await rows_naming(sessions, "bob@") == {}
    # Still suppressed for whoever has the addresses next; Carol is, by name.
    again = await add_customer(sessions, email="annabel@example.com", traits={})
    async with sessions() as session:
        blocked = await subscriptions.blocked(
            session, {again: "annabel@example.com", carol: "carol@example.com"}, "transactional", None
        )
    assert blocked == {again: "address suppressed (bounced)"}


async def test_feedback_about_an_address_an_erased_person_had_and_a_customer_has_now_names_it(
    sessions, client, admin_headers
):
    """The person is back (or someone else has the address): the address is a customer's again, and
    their suppression names it, folding in the digest the erasure left."""
    ann = await add_customer(sessions, email="ann@example.com", traits={})
    async with transaction(sessions) as session:
        await subscriptions.unsubscribe(session, ann, subscriptions.ALL_GROUPS, "one_click")
    response = await client.delete(f"/api/customers/{ann}?reason=asked", headers=admin_headers)
    assert response.status_code == 200, response.text
    await add_customer(sessions, email="ann@example.com", traits={})

    await _feedback(client, admin_headers, {"type": "bounce", "email": "ann@example.com", "detail": "550"})
    assert await _suppressions(sessions) == [("ann@example.com", "bounced", "550")]
