"""Our fast MIME writer produces what the standard library parses back exactly, and refuses injection."""

from __future__ import annotations

import re
from email import policy
from email.parser import BytesParser
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from config.settings import Settings
from domain.email.compose import Composer, InvalidRecipient, checked_address, message_id_for
from domain.email.delivery import MessageFactory
from domain.email.models import TemplateVersion
from domain.subscriptions import service as subscriptions


def _parse(data: bytes):
    return BytesParser(policy=policy.default).parsebytes(data)


def test_message_round_trips_through_the_stdlib_parser():
    composer = Composer("Acme Café <news@acme.example>")
    data = composer.build(
        to="ann@example.com",
        subject="Grüße, Ann — 50 % off",
        html="<p>Héllo</p>" + "x" * 5000,
        text="Héllo\nline two",
        message_id=message_id_for("k1", "acme.example"),
        headers={"List-Unsubscribe": "<https://acme.example/u/t>"},
    )
    msg = _parse(data)
    assert msg["Subject"] == "Grüße, Ann — 50 % off"
    assert msg["From"].addresses[0].display_name == "Acme Café"
    assert msg["From"].addresses[0].addr_spec == "news@acme.example"
    assert msg["To"] == "ann@example.com"
    assert msg["Message-ID"] == message_id_for("k1", "acme.example")
    assert msg["List-Unsubscribe"] == "<https://acme.example/u/t>"
    assert msg.get_body(("plain",)).get_content() == "Héllo\nline two"
    assert msg.get_body(("html",)).get_content().startswith("<p>Héllo</p>xxx")
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))
    assert msg.defects == []


def test_message_id_is_stable_per_key():
    assert message_id_for("a", "d") == message_id_for("a", "d") != message_id_for("b", "d")


@pytest.mark.parametrize(
    "bad",
    [
        "ann@example.com\r\nBcc: eve@evil.example",
        "ann@example.com\nX: y",
        "ann\x00@example.com",
        "not an address",
    ],
)
def test_bad_addresses_are_refused_not_rewritten(bad):
    with pytest.raises(InvalidRecipient):
        checked_address(bad)


@pytest.mark.parametrize(
    "subject", ["Hi\r\nBcc: eve@evil.example", "Hi\nX-Evil: 1", "Hi\x0b", "Hi\u2028there"]
)
def test_subjects_with_line_breaks_or_controls_are_refused(subject):
    with pytest.raises(InvalidRecipient):
        Composer("a@b.example").build(
            to="c@d.example", subject=subject, html="x", text="x", message_id="<m@d>"
        )


def test_sender_name_with_line_break_is_refused():
    with pytest.raises(InvalidRecipient):
        Composer("Evil\r\nBcc: x@y.example <a@b.example>")


def test_a_sender_with_an_internationalised_domain_is_written_in_its_ascii_form():
    composer = Composer('"Bücherstube, Zoé" <news@bücher.example>')
    data = composer.build(
        to="ann@example.com",
        subject="Hi",
        html="<p>x</p>",
        text="x",
        message_id=message_id_for("k1", composer.domain),
    )
    msg = _parse(data)
    assert msg["From"].addresses[0].display_name == "Bücherstube, Zoé"
    assert msg["From"].addresses[0].addr_spec == "news@xn--bcher-kva.example"
    assert msg["Message-ID"].endswith("@xn--bcher-kva.example>")
    assert data.isascii() and msg.defects == []


def test_replies_go_to_the_reply_to_setting_and_without_it_to_the_sender():
    def built(composer: Composer):
        return _parse(
            composer.build(to="ann@example.com", subject="Hi", html="<p>x</p>", text="x", message_id="<k@x>")
        )

    msg = built(Composer("Acme <noreply@acme.example>", '"Acme, Support" <help@bücher.example>'))
    assert msg["Reply-To"].addresses[0].display_name == "Acme, Support"
    assert msg["Reply-To"].addresses[0].addr_spec == "help@xn--bcher-kva.example"
    assert msg["From"].addresses[0].addr_spec == "noreply@acme.example" and msg.defects == []
    assert "Reply-To" not in built(Composer("Acme <noreply@acme.example>"))
    for bad in ["help@a.example, sales@a.example", "no address", "Evil\r\nBcc: x@y.example <a@b.example>"]:
        with pytest.raises(InvalidRecipient, match="mail_reply_to"):
            Composer("Acme <noreply@acme.example>", bad)


def test_every_email_the_factory_makes_carries_the_configured_reply_to(settings):
    factory = MessageFactory(settings.model_copy(update={"mail_reply_to": "Support <help@acme.example>"}))
    version = TemplateVersion(
        template_id="t", version=1, subject="Hi", html="<p>x</p>", text=None, layout="base",
        category="marketing", subscription_group=None, variants={},
    )  # fmt: skip
    made = factory.make(version, {"id": 1, "email": "ann@example.com", "traits": {}}, idempotency_key="k")
    assert _parse(made.data)["Reply-To"].addresses[0].addr_spec == "help@acme.example"


def _version(**kw) -> TemplateVersion:
    spec = dict(
        template_id="t", version=1, subject="Hi", html="<p>x</p>", text=None, layout="base",
        category="marketing", subscription_group="news", variants={},
    ) | kw  # fmt: skip
    return TemplateVersion(**spec)


def _made(settings, version: TemplateVersion | None = None, **update):
    factory = MessageFactory(settings.model_copy(update={"postal_address": "1 Main St"} | update))
    customer = {"id": 7, "email": "ann@example.com", "traits": {}}
    return factory, _parse(factory.make(version or _version(), customer, idempotency_key="k").data)


def test_the_text_footer_opens_with_the_signature_separator_dash_dash_space(settings):
    _, msg = _made(settings, _version(text="Hello Ann\n--\nnot a signature"))
    lines = msg.get_body(("plain",)).get_content().splitlines()
    # RFC 3676 4.3: "-- " alone on a line, so clients fold or strip the footer as a signature
    assert lines[:5] == ["Hello Ann", "--", "not a signature", "", "-- "]
    assert lines[5] == "You receive this email because you subscribed to news."
    assert lines[6].startswith("Manage your preferences: ") and lines[-1] == "Journeys · 1 Main St"


@pytest.mark.parametrize(
    ("category", "postal_address", "footer"),
    [
        # a receipt with the sender's address and no unsubscribe link: the address is a footer too
        ("transactional", "1 Main St", ["-- ", "Journeys · 1 Main St"]),
        ("transactional", None, []),  # nothing to say: no separator either
        ("marketing", None, ["-- ", "You receive this email because you subscribed to news."]),
    ],
)
def test_the_text_footer_opens_with_the_separator_whenever_it_has_content(
    settings, category, postal_address, footer
):
    _, msg = _made(settings, _version(category=category, text="Your receipt"), postal_address=postal_address)
    lines = msg.get_body(("plain",)).get_content().splitlines()
    expected = ["Your receipt", "", *footer] if footer else ["Your receipt"]
    assert lines[: len(expected)] == expected and lines.count("-- ") == (1 if footer else 0)
    if category == "transactional":
        assert lines == expected


def test_the_text_footer_names_the_group_the_email_is_for_as_the_html_footer_does(settings):
    factory = MessageFactory(settings.model_copy(update={"postal_address": "1 Main St"}))
    customer = {"id": 7, "email": "ann@example.com", "traits": {}}
    for group_name, shown in [
        ("Weekly  offers\n& news", "Weekly offers & news"),  # one line, as the HTML reads it
        (None, "news"),  # a group without a stored name: its id, as in the HTML
    ]:
        made = factory.make(_version(), customer, idempotency_key="k", group_name=group_name)
        msg = _parse(made.data)
        text = msg.get_body(("plain",)).get_content()
        html = " ".join(msg.get_body(("html",)).get_content().split())
        said = f"You receive this email because you subscribed to {shown}."
        assert said in text.splitlines()
        assert said.replace("&", "&amp;") in html


@pytest.mark.parametrize(
    "subject",
    [
        "Save =?utf-8?q?big?= now",
        "=?iso-8859-1?q?caf=E9?=",
        "=?utf-8?b?SGVsbG8=?= =?utf-8?b?V29ybGQ=?=",
        "Price:=?utf-8?q?_5?=off",
        "Grüße =?utf-8?q?Ann?=",
        "A long subject line that goes on and on, past where a header folds, " * 2 + "=?utf-8?q?x?=",
        "Just =? and ?= apart",
    ],
)
def test_a_subject_holding_what_looks_like_an_encoded_word_reads_exactly_as_written(settings, subject):
    _, msg = _made(settings, _version(subject=subject))
    assert msg["Subject"] == subject and msg.defects == []
    data = Composer("a@b.example").build(
        to="c@d.example", subject=subject, html="x", text="x", message_id="<m@d>"
    )
    assert _parse(data)["Subject"] == subject and data.isascii()
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))


def _list_unsubscribe(msg) -> list[str]:
    return [uri.strip().removeprefix("<").removesuffix(">") for uri in msg["List-Unsubscribe"].split(",")]


def test_list_unsubscribe_offers_a_mailto_carrying_the_signed_token_beside_the_one_click_url(settings):
    factory, msg = _made(settings, mail_unsubscribe_mailto="un+sub&x@bücher.example")
    one_click, mailto = _list_unsubscribe(msg)
    assert one_click == factory.unsubscribe_url(7, "news") and one_click.startswith("http")
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"  # RFC 8058: for the https URL
    parts = urlsplit(mailto)
    assert parts.scheme == "mailto" and unquote(parts.path) == "un+sub&x@xn--bcher-kva.example"
    [subject] = parse_qs(parts.query)["subject"]
    word, token = subject.split(" ")
    assert word == "unsubscribe" and token == one_click.rpartition("/u/")[2]
    assert subscriptions.read_unsubscribe_token(settings.secret_key.get_secret_value(), token) == (7, "news")
    assert msg.defects == [] and "\r\n" not in msg["List-Unsubscribe"]

    _, without = _made(settings)
    assert _list_unsubscribe(without) == [one_click]
    _, transactional = _made(
        settings, _version(category="transactional"), mail_unsubscribe_mailto="u@a.example"
    )
    assert "List-Unsubscribe" not in transactional


def test_a_long_list_unsubscribe_folds_between_its_uris_and_every_uri_comes_back_intact(settings):
    """A long public URL and the mailto together pass the point where a header was RFC 2047 encoded
    (which turned the URIs into encoded words no mailbox can use); folded between entries instead,
    each reaches the recipient's mail client exactly."""
    base = "https://mail.acme.example/" + "long-path-" * 88  # 900 characters and more
    factory = MessageFactory(
        settings.model_copy(
            update={"public_url": base, "mail_unsubscribe_mailto": "unsubscribe@acme.example"}
        )
    )
    data = factory.make(
        _version(), {"id": 7, "email": "ann@example.com", "traits": {}}, idempotency_key="k"
    ).data
    msg = _parse(data)
    one_click, mailto = _list_unsubscribe(msg)
    assert one_click == factory.unsubscribe_url(7, "news") and one_click.startswith(base + "/u/")
    token = one_click.rpartition("/u/")[2]
    assert mailto == f"unsubscribe@acme.example?subject=unsubscribe%20{token}".join(("mailto:", ""))
    assert subscriptions.read_unsubscribe_token(settings.secret_key.get_secret_value(), token) == (7, "news")
    assert msg.defects == [] and msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    head = data.partition(b"\r\n\r\n")[0]
    assert b"=?" not in head and all(len(line) <= 998 for line in head.split(b"\r\n"))
    # What a mail client reads unfolded (RFC 2047 does not apply to URIs): the same URIs, as written.
    [raw] = re.findall(rb"^List-Unsubscribe:([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)", head, re.MULTILINE)
    assert raw.replace(b"\r\n", b"").decode().strip() == f"<{one_click}>, <{mailto}>"
    assert len(f"List-Unsubscribe: <{one_click}>, <{mailto}>") > 998  # it did need folding


def test_an_unsubscribe_uri_too_long_for_any_header_line_fails_the_message_rather_than_breaking(settings):
    factory = MessageFactory(settings.model_copy(update={"public_url": "https://a.example/" + "x" * 1000}))
    with pytest.raises(InvalidRecipient, match="List-Unsubscribe"):
        factory.make(_version(), {"id": 7, "email": "ann@example.com", "traits": {}}, idempotency_key="k")


@pytest.mark.parametrize(
    "bad",
    [
        "u@a.example, v@a.example",
        "Unsubscribe <u@a.example>",
        "mailto:u@a.example",
        "u@a.example?subject=x",
        "no address",
        "u@a.example\r\nBcc: eve@evil.example",
        "zoé@a.example",
    ],
)
def test_an_unsubscribe_mailbox_that_is_not_one_plain_address_is_refused(settings, bad):
    with pytest.raises(InvalidRecipient, match="mail_unsubscribe_mailto"):
        MessageFactory(settings.model_copy(update={"mail_unsubscribe_mailto": bad}))


def test_an_internationalised_public_url_reaches_the_list_unsubscribe_header_as_ascii_uris(settings):
    """JOURNEYS_PUBLIC_URL with a domain in Unicode (and a space in its path) is written in ASCII when
    it is read, so the header carries a link a mailbox can POST to, not encoded words."""
    public = Settings(dev_mode=True, public_url="https://bücher.example/mein shop/").public_url
    factory = MessageFactory(settings.model_copy(update={"public_url": public}))
    data = factory.make(
        _version(), {"id": 7, "email": "ann@example.com", "traits": {}}, idempotency_key="k"
    ).data
    head = data.partition(b"\r\n\r\n")[0]
    assert b"=?" not in head
    [one_click] = _list_unsubscribe(_parse(data))
    assert one_click.startswith("https://xn--bcher-kva.example/mein%20shop/u/")
