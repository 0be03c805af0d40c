"""Unsubscribing by email through the inbound-mail providers: the mailto of a sent marketing email,
followed by a mail client, posted to the endpoint as Postmark (JSON), SendGrid Inbound Parse
(multipart form) or a Mailgun route (multipart or urlencoded form) wraps it, with the raw message or
with only the fields the provider parsed out, unsubscribes as the one-click link does, once."""

from __future__ import annotations

import json
import sqlite3
import uuid
from email import message_from_bytes
from email.policy import default

import pytest
from sqlalchemy.exc import OperationalError
from urllib3 import encode_multipart_formdata

from api.inbound_posts import MAX_FORM_FIELDS, MAX_FORM_FILES
from domain.db import transaction
from domain.email.delivery import MessageFactory
from domain.subscriptions import repository as subscriptions_repository
from domain.subscriptions import service as subscriptions
from tests.email.helpers import add_customer, add_template
from tests.email.test_unsubscribe_by_email import ENDPOINT, MAILBOX, _changes, _followed, _sent_mailto

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4  # an attachment: a signature's logo

pytestmark = pytest.mark.unsubscribe_mailbox


def _form(fields: list) -> dict:
    """A multipart/form-data post (as SendGrid and Mailgun send it), composed by urllib3."""
    body, content_type = encode_multipart_formdata(fields)
    return {"content": body, "headers": {"Content-Type": content_type}}


def _parts(raw: bytes) -> tuple[str, str, str]:
    """What a provider that parses the message posts of it: From, Subject, the plain text."""
    message = message_from_bytes(raw, policy=default)
    return str(message["From"]), str(message["Subject"]), message.get_body(("plain",)).get_content()


# Each provider's post of the message `raw`. Where the raw message is posted, the parsed fields beside
# it hold no token, so the answer shows the raw message was the one read.
def postmark_raw(raw: bytes) -> dict:
    sender, _, _ = _parts(raw)
    document = {
        "From": sender,
        "To": MAILBOX,
        "Subject": "",
        "TextBody": "",
        "HtmlBody": "",
        "Headers": [],
        "Attachments": [],
        "RawEmail": raw.decode(),
    }
    return {"json": document}


def postmark_fields(raw: bytes) -> dict:
    sender, subject, text = _parts(raw)
    # Postmark's own id for each message it receives (the same in each retry of its post)
    postmark_id = uuid.uuid5(uuid.NAMESPACE_URL, str(message_from_bytes(raw)["Message-ID"]))
    document = {
        "FromName": "Ann",
        "MessageStream": "inbound",
        "From": sender,
        "FromFull": {"Email": sender, "Name": "Ann", "MailboxHash": ""},
        "To": MAILBOX,
        "Subject": subject,
        "MessageID": str(postmark_id),
        "Date": "Fri, 1 Aug 2014 16:45:32 -04:00",
        "TextBody": text,
        "HtmlBody": "",
        "StrippedTextReply": "",
        "Headers": [{"Name": "X-Spam-Status", "Value": "No"}],
        "Attachments": [],
    }
    return {"json": document}


def sendgrid_raw(raw: bytes) -> dict:
    sender, _, _ = _parts(raw)
    envelope = json.dumps({"to": [MAILBOX], "from": "ann@example.com"})
    return _form(
        [
            ("dkim", "{@example.com : pass}"),
            ("email", raw.decode()),
            ("to", MAILBOX),
            ("from", sender),
            ("subject", ""),
            ("sender_ip", "192.0.2.1"),
            ("envelope", envelope),
            ("charsets", json.dumps({"to": "UTF-8", "from": "UTF-8", "subject": "UTF-8"})),
            ("SPF", "pass"),
        ]
    )


def sendgrid_fields(raw: bytes) -> dict:
    sender, subject, text = _parts(raw)
    headers = raw.partition(b"\r\n\r\n")[0].decode()
    return _form(
        [
            ("headers", headers),
            ("dkim", "{@example.com : pass}"),
            ("to", MAILBOX),
            ("text", text),
            ("from", sender),
            ("sender_ip", "192.0.2.1"),
            ("envelope", json.dumps({"to": [MAILBOX], "from": "ann@example.com"})),
            ("attachments", "1"),
            ("subject", subject),
            ("attachment-info", json.dumps({"attachment1": {"filename": "logo.png", "type": "image/png"}})),
            ("charsets", json.dumps({"to": "UTF-8", "text": "UTF-8", "subject": "UTF-8", "from": "UTF-8"})),
            ("SPF", "pass"),
            ("attachment1", ("logo.png", PNG, "image/png")),
        ]
    )


def _mailgun_signature() -> list:
    return [("timestamp", "1733332800"), ("token", "a" * 50), ("signature", "0" * 64)]


def mailgun_mime(raw: bytes) -> dict:
    sender, _, _ = _parts(raw)
    post = _form(
        [
            ("recipient", MAILBOX),
            ("sender", "ann@example.com"),
            ("from", sender),
            ("subject", ""),
            ("body-mime", raw.decode()),
            *_mailgun_signature(),
        ]
    )
    return post | {"path": ENDPOINT + "/mime"}  # Mailgun posts the raw message only to a URL ending in mime


def _mailgun_parsed(raw: bytes) -> list:
    sender, subject, text = _parts(raw)
    headers = [[name, value] for name, value in message_from_bytes(raw, policy=default).items()]
    return [
        ("recipient", MAILBOX),
        ("sender", "ann@example.com"),
        ("from", sender),
        ("subject", subject),
        ("body-plain", text),
        ("stripped-text", text),
        ("message-headers", json.dumps(headers)),
        *_mailgun_signature(),
    ]


def mailgun_urlencoded(raw: bytes) -> dict:
    return {"data": dict(_mailgun_parsed(raw))}  # httpx posts it application/x-www-form-urlencoded


def mailgun_multipart(raw: bytes) -> dict:
    # Mailgun posts multipart/form-data when the message has attachments
    fields = [
        *_mailgun_parsed(raw),
        ("attachment-count", "1"),
        ("attachment-1", ("logo.png", PNG, "image/png")),
    ]
    return _form(fields)


SHAPES = [
    postmark_raw,
    postmark_fields,
    sendgrid_raw,
    sendgrid_fields,
    mailgun_mime,
    mailgun_urlencoded,
    mailgun_multipart,
]


def _post(client, key: dict, shape: dict):
    headers = key | shape.get("headers", {})
    rest = {k: v for k, v in shape.items() if k not in ("headers", "path")}
    return client.post(shape.get("path", ENDPOINT), headers=headers, **rest)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda shape: shape.__name__)
async def test_each_providers_post_of_the_mailto_unsubscribes_its_customer_once(
    client, sessions, activities, capture, inbound_key, shape
):
    ann = await add_customer(sessions, email="ann@example.com", traits={"first_name": "Ann"})
    await add_customer(sessions, email="bob@example.com", traits={"first_name": "Bob"})
    await add_template(sessions, subscription_group="newsletter")
    mailto = await _sent_mailto(sessions, activities, capture, ann)
    post = shape(_followed(mailto, "Ann <ann@example.com>", body="Sent from my phone"))

    r = await _post(client, inbound_key, post)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "unsubscribed", r.json()
    assert (r.json()["customer_id"], r.json()["group_id"], r.json()["changed"]) == (ann, "newsletter", True)
    change = {"group_id": "newsletter", "subscribed": False, "source": "mailto"}
    assert await _changes(sessions, ann) == [change]

    # The provider posts it again (a retry after a timeout): the same answer, nothing more.
    again = await _post(client, inbound_key, post)
    assert again.status_code == 200 and again.json()["status"] == "unsubscribed"
    assert again.json()["changed"] is False
    assert await _changes(sessions, ann) == [change]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda shape: shape.__name__)
async def test_each_providers_retry_after_re_subscribing_changes_nothing(
    client, sessions, activities, capture, inbound_key, shape
):
    """The provider posts a mail again after the person re-subscribed: acknowledged, nothing undone;
    a new mail (another Message-ID) with the same request unsubscribes again."""
    ann = await add_customer(sessions, email="ann@example.com", traits={"first_name": "Ann"})
    await add_template(sessions, subscription_group="newsletter")
    mailto = await _sent_mailto(sessions, activities, capture, ann)
    first = shape(_followed(mailto, "Ann <ann@example.com>", message_id="<r1@mail.example>"))
    assert (await _post(client, inbound_key, first)).json()["changed"] is True
    async with transaction(sessions) as session:
        await subscriptions.save_preferences(session, ann, {"newsletter"}, False)

    retry = await _post(client, inbound_key, first)
    assert retry.status_code == 200, retry.text
    assert (retry.json()["status"], retry.json()["changed"], retry.json()["repeat"]) == (
        "unsubscribed",
        False,
        True,
    )
    assert [c["subscribed"] for c in await _changes(sessions, ann)] == [False, True]

    another = shape(_followed(mailto, "Ann <ann@example.com>", message_id="<r2@mail.example>"))
    r = await _post(client, inbound_key, another)
    assert (r.status_code, r.json()["changed"], r.json()["repeat"]) == (200, True, False), r.text
    assert [c["subscribed"] for c in await _changes(sessions, ann)] == [False, True, False]


async def test_a_parsed_post_reads_the_token_in_the_text_and_an_empty_raw_field_is_no_message(
    client, sessions, activities, capture, inbound_key
):
    """A mail client that dropped the mailto's subject leaves the token in the text, which the parsed
    fields carry; an empty RawEmail (the option off in some setups) falls back to them."""
    ann = await add_customer(sessions, email="ann@example.com", traits={"first_name": "Ann"})
    await add_template(sessions, subscription_group="newsletter")
    mailto = await _sent_mailto(sessions, activities, capture, ann)
    _, request_subject, _ = _parts(_followed(mailto, "ann@example.com"))
    in_text = _followed(
        mailto, "ann@example.com", subject="Re: hello", body=f"Remove me.\n{request_subject}\n"
    )
    document = postmark_fields(in_text)["json"] | {"RawEmail": ""}
    outcomes = []
    for post in [sendgrid_fields(in_text), mailgun_urlencoded(in_text), {"json": document}]:
        r = await _post(client, inbound_key, post)
        assert r.status_code == 200, r.text
        outcomes.append((r.json()["status"], r.json()["changed"]))
    assert outcomes == [("unsubscribed", True), ("unsubscribed", False), ("unsubscribed", False)]
    assert len(await _changes(sessions, ann)) == 1


async def test_a_providers_post_that_asks_nothing_we_can_act_on_is_acknowledged(
    client, sessions, settings, inbound_key
):
    """Spam, a forged token, a test send's token, as each provider posts them: 200 'ignored' with the
    reason, so the provider does not deliver them again for days."""
    ann = await add_customer(sessions, email="ann@example.com", traits={})
    factory = MessageFactory(settings)
    token = factory.unsubscribe_url(ann, "newsletter").rpartition("/u/")[2]
    forged = f"{token.split('.')[0]}.{'A' * len(token.split('.')[1])}"
    test_send = factory.unsubscribe_url(subscriptions.NO_CUSTOMER, "newsletter").rpartition("/u/")[2]
    cases = [
        ("no_token", "Cheap watches", postmark_fields),
        ("no_token", "Cheap watches", postmark_raw),
        ("bad_token", f"unsubscribe {forged}", sendgrid_fields),
        ("bad_token", f"unsubscribe {forged}", sendgrid_raw),
        ("test_send", f"unsubscribe {test_send}", mailgun_urlencoded),
        ("test_send", f"unsubscribe {test_send}", mailgun_mime),
    ]
    for reason, subject, shape in cases:
        message = _followed(f"mailto:{MAILBOX}", "ann@example.com", subject=subject, body="hi")
        r = await _post(client, inbound_key, shape(message))
        assert r.status_code == 200, (shape.__name__, r.text)
        assert (r.json()["status"], r.json()["reason"]) == ("ignored", reason), (shape.__name__, r.json())
    assert await _changes(sessions, ann) == []


@pytest.mark.parametrize(
    "shape", [postmark_fields, sendgrid_raw, mailgun_urlencoded], ids=lambda shape: shape.__name__
)
async def test_a_transient_failure_is_answered_for_a_retry_which_then_acts(
    client, sessions, activities, capture, inbound_key, shape, monkeypatch
):
    """A busy database is no reason to stop the provider: 503, nothing kept, and its retry unsubscribes."""
    ann = await add_customer(sessions, email="ann@example.com", traits={"first_name": "Ann"})
    await add_template(sessions, subscription_group="newsletter")
    post = shape(_followed(await _sent_mailto(sessions, activities, capture, ann), "ann@example.com"))

    async def busy(*_args, **_kwargs):
        raise OperationalError("INSERT", {}, sqlite3.OperationalError("database is locked"))

    with monkeypatch.context() as patched:
        patched.setattr(subscriptions_repository, "claim_mail", busy)
        r = await _post(client, inbound_key, post)
    assert (r.status_code, r.json()["error"], r.headers["Retry-After"]) == (503, "busy", "1"), r.text
    assert await _changes(sessions, ann) == []
    retry = await _post(client, inbound_key, post)
    assert (retry.status_code, retry.json()["changed"], retry.json()["repeat"]) == (200, True, False)


def _refused_for_good(post: dict) -> int:
    """The status that stops the provider's retries: Postmark's (JSON) 403, Mailgun's (forms) 406."""
    json_post = "json" in post or post.get("headers", {}).get("Content-Type") == "application/json"
    return 403 if json_post else 406


async def test_a_malformed_post_is_refused_naming_the_problem_and_writes_nothing(
    client, sessions, settings, inbound_key
):
    ann = await add_customer(sessions, email="ann@example.com", traits={})
    token = MessageFactory(settings).unsubscribe_url(ann, "newsletter").rpartition("/u/")[2]
    request = f"unsubscribe {token}"
    good = _followed(f"mailto:{MAILBOX}", "ann@example.com", subject=request)
    json_type = {"Content-Type": "application/json"}
    urlencoded = {"Content-Type": "application/x-www-form-urlencoded"}
    part = b'--b\r\nContent-Disposition: form-data; name="from"\r\n\r\nann@example.com\r\n--b--\r\n'
    # Refused with the status at which its provider stops retrying: it can never be read.
    cases = [
        ({"content": b"{not json", "headers": json_type}, "body", "is not JSON"),
        ({"content": b"[" * 100_000, "headers": json_type}, "body", "is not JSON"),  # nesting: bounded
        ({"json": [request]}, "body", "must be a JSON object"),
        ({"json": {"Subject": request, "TextBody": ""}}, "From", "is missing"),
        ({"json": {"From": "ann@example.com", "RawEmail": 42}}, "RawEmail", "must be a string"),
        ({"json": {"From": "ann@example.com", "Subject": [request]}}, "Subject", "must be a string"),
        ({"json": {"From": "ann@example.com", "RawEmail": request}}, "body", "has no From header"),
        (
            {"content": part, "headers": {"Content-Type": "multipart/form-data"}},
            "body",
            "Missing boundary",
        ),
        (
            {
                "content": b"--b\r\ngarbage\r\n\r\n" + request.encode(),
                "headers": {"Content-Type": "multipart/form-data; boundary=b"},
            },
            "body",
            "Invalid multipart data",
        ),
        (
            {
                "content": part.replace(b'; name="from"', b""),
                "headers": {"Content-Type": "multipart/form-data; boundary=b"},
            },
            "body",
            '"name" must be provided',
        ),
        ({"data": {"subject": request, "text": ""}}, "body", "neither a raw message"),
        (_form([("subject", request)]), "body", "neither a raw message"),
        ({"content": b"", "headers": urlencoded}, "body", "neither a raw message"),
        (
            {"content": ("from=a&" * MAX_FORM_FIELDS + f"subject={request}").encode(), "headers": urlencoded},
            "body",
            "Too many fields",
        ),
        (
            _form(
                [
                    ("from", "a"),
                    *[(f"attachment{i}", ("a.png", b"x", "image/png")) for i in range(MAX_FORM_FILES + 1)],
                ]
            ),
            "body",
            "Too many files",
        ),
        (
            _form([("from", "ann@example.com"), ("email", "unsubscribe " + token)]),
            "body",
            "has no From header",
        ),
    ]
    for post, field, problem in cases:
        r = await _post(client, inbound_key, post)
        assert r.status_code == _refused_for_good(post), (post, r.status_code, r.text)
        assert r.json()["error"] == "not_a_message", r.json()
        assert r.json()["detail"]["field"] == field and problem in r.json()["detail"]["problem"], r.json()

    # Every shape is read to the same size cap, and refused as it is read (here without Content-Length).
    async def chunks(head: bytes):
        yield head
        for _ in range(6):
            yield b"x" * 200_000

    for head, content_type, status in [
        (b'{"From": "ann@example.com", "Subject": "' + request.encode(), "application/json", 403),
        (b"from=ann%40example.com&subject=" + request.encode() + b"&text=", urlencoded["Content-Type"], 406),
        (sendgrid_raw(good)["content"], sendgrid_raw(good)["headers"]["Content-Type"], 406),
    ]:
        r = await client.post(
            ENDPOINT, content=chunks(head), headers=inbound_key | {"Content-Type": content_type}
        )
        assert r.status_code == status and r.json()["error"] == "too_large", r.text
        assert "inbound_mail_max_bytes" in r.json()["detail"]["problem"]
    r = await _post(client, inbound_key, {"content": b"x", "headers": {"Content-Type": "text/plain"}})
    assert r.status_code == 415 and "Postmark" in r.json()["detail"]["problem"]
    assert await _changes(sessions, ann) == []
