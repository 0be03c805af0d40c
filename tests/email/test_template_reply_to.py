"""A template's own Reply-To: saved with its version, checked as the sender is, and what recipients of
that version reply to; without one, the JOURNEYS_MAIL_REPLY_TO setting."""

from __future__ import annotations

from email import policy
from email.parser import BytesParser

import pytest

from domain.email.delivery import MessageFactory, TemplateSpec
from domain.email.models import TemplateVersion

TEMPLATE = {
    "id": "receipt",
    "name": "Receipt",
    "subject": "Your receipt",
    "html": "<p>Thanks</p>",
    "category": "transactional",
}


@pytest.fixture
def settings(settings):
    return settings.model_copy(update={"mail_reply_to": "Hello <hello@acme.example>"})


def _reply_to(raw: str):
    [address] = BytesParser(policy=policy.default).parsebytes(raw.encode())["Reply-To"].addresses
    return address.display_name, address.addr_spec


async def _test_send(client, headers, capture, n: int, **spec) -> tuple[str, str]:
    r = await client.post(
        "/api/templates/receipt/test", json={"to": "qa@example.com"} | spec, headers=headers
    )
    assert r.status_code == 200, r.text
    return _reply_to((await capture.wait_for_count(n))[0]["raw"])


async def test_a_template_version_replies_to_its_own_mailbox_then_the_setting(
    client, marketer_headers, capture
):
    own = {"reply_to": '"Zoé, Support" <help@bücher.example>'}
    r = await client.post("/api/templates", json=TEMPLATE | own, headers=marketer_headers)
    assert r.status_code == 201, r.text
    assert r.json()["reply_to"] == own["reply_to"]  # as the marketer wrote it
    assert await _test_send(client, marketer_headers, capture, 1) == (
        "Zoé, Support",
        "help@xn--bcher-kva.example",
    )

    r = await client.put("/api/templates/receipt", json=TEMPLATE, headers=marketer_headers)
    assert r.status_code == 200 and r.json()["version"] == 2 and r.json()["reply_to"] is None
    assert await _test_send(client, marketer_headers, capture, 2) == ("Hello", "hello@acme.example")
    # version 1 keeps its own: a journey that pinned it still sends it
    third = await _test_send(client, marketer_headers, capture, 3, version=1)
    assert third == ("Zoé, Support", "help@xn--bcher-kva.example")
    got = (await client.get("/api/templates/receipt", headers=marketer_headers)).json()
    assert got["version"] == 2 and got["reply_to"] is None


@pytest.mark.parametrize(
    "bad",
    [
        "help@acme.example, sales@acme.example",
        "no address",
        "Evil\r\nBcc: x@y.example <a@b.example>",
        "zoé@a.example",
    ],
)
async def test_a_reply_to_that_is_not_one_address_is_refused_at_save(client, marketer_headers, bad):
    r = await client.post("/api/templates", json=TEMPLATE | {"reply_to": bad}, headers=marketer_headers)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert (detail[0] if isinstance(detail, list) else detail)["field"].endswith("reply_to")
    assert (await client.get("/api/templates", headers=marketer_headers)).json() == []


def test_a_broadcast_writes_the_template_reply_to_in_every_message(settings):
    factory = MessageFactory(settings)
    version = TemplateVersion(
        template_id="t", version=1, subject="Hi", html="<p>x</p>", text=None, layout="base",
        category="marketing", subscription_group=None, variants={}, reply_to="Desk <desk@acme.example>",
    )  # fmt: skip
    for n in range(2):
        customer = {"id": n + 1, "email": f"c{n}@example.com", "traits": {}}
        made = factory.make(TemplateSpec.of(version), customer, idempotency_key=f"b/{n}")
        assert _reply_to(made.data.decode()) == ("Desk", "desk@acme.example")
