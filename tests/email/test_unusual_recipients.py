"""Recipients found by fuzzing the API: a stored customer without an address (preview answered 500)
and addresses outside ASCII (a UnicodeEncodeError in the SMTP client: 500 for a test send, an activity
failing on every retry for a journey or broadcast send)."""

from __future__ import annotations

import pytest

from activities.smtp import Mailer, PermanentFailure, UnsupportedRecipient
from domain.customers.models import Customer
from domain.db import transaction, utcnow

GOOD = {"id": "t", "name": "n", "subject": "Hi", "html": "<p>x</p>"}


def _problem(r) -> dict:
    detail = r.json()["detail"]
    return detail[0] if isinstance(detail, list) else detail


# -- 3. a stored customer without an address ----------------------------------------------------------


async def test_preview_and_test_send_for_a_customer_without_email(
    client, marketer_headers, sessions, capture
):
    async with transaction(sessions) as session:
        row = Customer(
            user_id="u1", traits={"first_name": "Ann"}, first_seen_at=utcnow(), last_seen_at=utcnow()
        )
        session.add(row)
        await session.flush()
        cid = row.id
    spec = GOOD | {"subject": "Hi {{ traits.first_name }}", "html": "<p>Hello {{ traits.first_name }}</p>"}
    assert (await client.post("/api/templates", json=spec, headers=marketer_headers)).status_code == 201
    r = await client.post("/api/templates/t/preview", json={"customer_id": cid}, headers=marketer_headers)
    assert r.status_code == 200, r.text
    assert r.json()["subject"] == "Hi Ann" and "Hello Ann" in r.json()["html"]
    r = await client.post(
        "/api/templates/t/test", json={"customer_id": cid, "to": "qa@example.com"}, headers=marketer_headers
    )
    assert r.status_code == 200, r.text
    [msg] = await capture.wait_for_count(1)
    assert msg["envelope_to"] == ["qa@example.com"] and msg["subject"] == "Hi Ann"


async def test_a_missing_address_or_a_null_trait_prints_nothing_and_default_covers_null(
    client, marketer_headers, sessions
):
    async with transaction(sessions) as session:
        row = Customer(
            user_id="u2", traits={"first_name": None}, first_seen_at=utcnow(), last_seen_at=utcnow()
        )
        session.add(row)
        await session.flush()
        cid = row.id
    spec = GOOD | {
        "subject": "Hi {{ traits.first_name | default('friend') }}",
        "html": "<p>[{{ customer.email }}] [{{ traits.first_name }}]</p>",
    }
    assert (await client.post("/api/templates", json=spec, headers=marketer_headers)).status_code == 201
    r = await client.post("/api/templates/t/preview", json={"customer_id": cid}, headers=marketer_headers)
    assert r.status_code == 200, r.text
    assert r.json()["subject"] == "Hi friend"
    assert "[] []" in r.json()["html"] and "None" not in r.json()["html"]


async def test_an_invalid_sample_address_is_a_422_naming_email(client, marketer_headers):
    spec = GOOD | {"html": "<p>{{ customer.email }}</p>"}
    assert (await client.post("/api/templates", json=spec, headers=marketer_headers)).status_code == 201
    r = await client.post(
        "/api/templates/t/preview", json={"email": "not an address"}, headers=marketer_headers
    )
    assert r.status_code == 422, r.text
    assert _problem(r)["field"] == "email" and "not a valid email address" in _problem(r)["problem"]
    r = await client.post(
        "/api/templates/t/preview", json={"email": "Ann@Example.COM"}, headers=marketer_headers
    )
    assert r.status_code == 200, r.text
    assert "Ann@example.com" in r.json()["html"]


# -- 4. addresses outside ASCII -----------------------------------------------------------------------


async def test_test_send_to_an_internationalised_domain_goes_out_in_ascii(client, marketer_headers, capture):
    assert (await client.post("/api/templates", json=GOOD, headers=marketer_headers)).status_code == 201
    r = await client.post("/api/templates/t/test", json={"to": "a@bücher.de"}, headers=marketer_headers)
    assert r.status_code == 200, r.text
    [msg] = await capture.wait_for_count(1)
    assert msg["envelope_to"] == ["a@xn--bcher-kva.de"]
    assert dict(msg["headers"])["To"] == "a@xn--bcher-kva.de"


async def test_test_send_to_a_non_ascii_mailbox_without_smtputf8_is_a_422_naming_to(
    client, marketer_headers, capture_without_smtputf8
):
    capture = capture_without_smtputf8
    assert (await client.post("/api/templates", json=GOOD, headers=marketer_headers)).status_code == 201
    r = await client.post("/api/templates/t/test", json={"to": "zoé@example.com"}, headers=marketer_headers)
    assert r.status_code == 422, r.text
    assert _problem(r)["field"] == "to" and "SMTPUTF8" in _problem(r)["problem"]
    # the connection is still good for the next message
    r = await client.post("/api/templates/t/test", json={"to": "qa@example.com"}, headers=marketer_headers)
    assert r.status_code == 200, r.text
    assert (await capture.wait_for_count(1))[0]["envelope_to"] == ["qa@example.com"]


async def test_a_non_ascii_mailbox_is_sent_with_smtputf8_where_the_server_offers_it_as_the_dev_capture_does(
    client, marketer_headers, capture
):
    assert (await client.post("/api/templates", json=GOOD, headers=marketer_headers)).status_code == 201
    r = await client.post("/api/templates/t/test", json={"to": "zoé@bücher.de"}, headers=marketer_headers)
    assert r.status_code == 200, r.text
    [msg] = await capture.wait_for_count(1)
    assert msg["envelope_to"] == ["zoé@xn--bcher-kva.de"]


async def test_a_journey_send_to_a_non_ascii_mailbox_fails_for_good_not_for_ever(
    settings, capture_without_smtputf8
):
    """What a journey or broadcast send meets: a permanent failure (recorded as failed, not retried),
    where it used to be a UnicodeEncodeError raised from the activity on every retry."""
    mailer = Mailer(settings)
    try:
        with pytest.raises(UnsupportedRecipient, match="SMTPUTF8") as caught:
            await mailer.send("news@example.com", "zoé@example.com", b"Subject: x\r\n\r\nx\r\n")
        assert isinstance(caught.value, PermanentFailure)
        await mailer.send("news@example.com", "a@bücher.de", b"Subject: x\r\n\r\nx\r\n")
    finally:
        await mailer.close()
    assert (await capture_without_smtputf8.wait_for_count(1))[0]["envelope_to"] == ["a@xn--bcher-kva.de"]
