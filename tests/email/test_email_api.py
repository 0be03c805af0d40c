"""Templates, preview, test send, one-click unsubscribe, the preference page and the feedback webhook."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from api.mail import factory as _unused  # noqa: F401 - imported for the app's lazy factory
from domain.db import transaction
from domain.email.delivery import MessageFactory
from domain.email.models import Message
from domain.events.models import Event
from domain.subscriptions import service as subscriptions
from domain.subscriptions.events import SUBSCRIPTION_CHANGED
from domain.subscriptions.models import Subscription
from tests.email.helpers import add_customer, opened_preferences

GOOD = {
    "id": "welcome",
    "name": "Welcome",
    "subject": "Hi {{ traits.first_name }}",
    "html": "<p>Hello {{ traits.first_name }}</p>",
}


@pytest.fixture
def links(settings) -> MessageFactory:
    return MessageFactory(settings)


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


async def _save(client, url: str, opened: str, ticked: str = "") -> str:
    """Save the page opened as ``opened`` with the boxes ``ticked`` (a form body such as ``group=a``)."""
    r = await client.post(url, content="&".join(p for p in (opened, ticked) if p), headers=FORM)
    assert r.status_code == 200 and "Saved" in r.text, r.text
    return r.text


async def _group(client, headers, gid="newsletter", name="Newsletter"):
    r = await client.post("/api/subscription-groups", json={"id": gid, "name": name}, headers=headers)
    assert r.status_code == 201, r.text


@pytest.mark.parametrize(
    ("patch", "field", "problem"),
    [
        ({"html": "<p>{% if %}</p>"}, "html", "syntax"),
        ({"html": "<p>{{ trait.first_name }}</p>"}, "html", "unknown variable(s): trait"),
        ({"html": "{{ ''.__class__ }}"}, "html", "not allowed"),
        ({"subject": "Hi\r\nBcc: eve@evil.example"}, "subject", "one line"),
        ({"subject": "Hi\u2028Bcc: eve@evil.example"}, "subject", "one line"),
        (
            {"variants": {"fr": {"subject": "Salut\r\nBcc: eve@evil.example"}}},
            "variants.fr.subject",
            "one line",
        ),
        ({"subscription_group": "nope"}, "subscription_group", "no subscription group"),
        ({"variants": {"fr": {"html": "{{ config }}"}}}, "variants.fr.html", "unknown variable"),
    ],
)
async def test_bad_templates_are_refused_at_save_naming_the_field(
    client, marketer_headers, patch, field, problem
):
    r = await client.post("/api/templates", json=GOOD | patch, headers=marketer_headers)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    detail = detail[0] if isinstance(detail, list) else detail
    assert detail["field"].endswith(field) and problem in detail["problem"]
    assert (await client.get("/api/templates", headers=marketer_headers)).json() == []


async def test_preview_for_sample_data_and_for_a_customer(client, marketer_headers, sessions):
    r = await client.post(
        "/api/templates",
        json=GOOD | {"variants": {"fr": {"subject": "Salut {{ traits.first_name }}"}}},
        headers=marketer_headers,
    )
    assert r.status_code == 201, r.text
    r = await client.post(
        "/api/templates/welcome/preview", json={"traits": {"first_name": "Zoé"}}, headers=marketer_headers
    )
    assert r.status_code == 200, r.text
    assert (
        r.json()["subject"] == "Hi Zoé"
        and "Hello Zoé" in r.json()["html"]
        and "Hello Zoé" in r.json()["text"]
    )
    cid = await add_customer(
        sessions, email="jean@example.com", traits={"first_name": "Jean"}, locale="fr-FR"
    )
    r = await client.post(
        "/api/templates/welcome/preview", json={"customer_id": cid}, headers=marketer_headers
    )
    assert r.json()["subject"] == "Salut Jean"
    r = await client.post(
        "/api/templates/welcome/preview", json={"customer_id": 999999}, headers=marketer_headers
    )
    assert r.status_code == 422 and r.json()["detail"]["field"] == "customer_id"


async def test_test_send_arrives_and_injection_in_the_address_is_refused(client, marketer_headers, capture):
    await client.post("/api/templates", json=GOOD, headers=marketer_headers)
    r = await client.post(
        "/api/templates/welcome/test",
        json={"to": "qa@example.com", "traits": {"first_name": "Tess"}},
        headers=marketer_headers,
    )
    assert r.status_code == 200, r.text
    [msg] = await capture.wait_for_count(1)
    assert msg["envelope_to"] == ["qa@example.com"] and msg["subject"] == "Hi Tess"
    for bad in ["qa@example.com\r\nBcc: eve@evil.example", "qa@example.com>\nRCPT TO:<eve@evil.example"]:
        r = await client.post("/api/templates/welcome/test", json={"to": bad}, headers=marketer_headers)
        assert r.status_code == 422, r.text
        assert r.json()["detail"]["field"] == "to"
    r = await client.post(
        "/api/templates/welcome/test",
        json={"to": "qa@example.com", "traits": {"first_name": "X\r\nBcc: eve@evil.example"}},
        headers=marketer_headers,
    )
    assert r.status_code == 422, r.text
    assert capture.handler.received == 1
    assert all(m["envelope_to"] == ["qa@example.com"] for m in capture.messages())
    assert not any(name.lower() == "bcc" for m in capture.messages() for name, _ in m["headers"])


async def test_one_click_unsubscribe_needs_no_credentials_and_get_does_not_unsubscribe(
    client, marketer_headers, sessions, links
):
    await _group(client, marketer_headers)
    cid = await add_customer(sessions, email="ann@example.com", traits={"first_name": "Ann"})
    url = links.unsubscribe_url(cid, "newsletter").removeprefix(links._base)
    page = await client.get(url)
    assert page.status_code == 200 and '<form method="post"' in page.text and "ann@example.com" in page.text
    prefs = (await client.get(f"/api/customers/{cid}/subscriptions", headers=marketer_headers)).json()
    assert prefs["groups"][0]["subscribed"] is True  # the GET changed nothing
    r = await client.post(
        url,
        content="List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 200 and "unsubscribed" in r.text
    prefs = (await client.get(f"/api/customers/{cid}/subscriptions", headers=marketer_headers)).json()
    assert prefs["groups"][0]["subscribed"] is False and prefs["unsubscribed_from_all"] is False
    async with transaction(sessions) as session:
        assert await subscriptions.blocked(session, {cid: "ann@example.com"}, "marketing", "newsletter")
        assert not await subscriptions.blocked(session, {cid: "ann@example.com"}, "transactional", None)


async def test_the_links_of_a_test_send_or_preview_change_nothing_for_the_customer_it_renders(
    client, marketer_headers, sessions, capture
):
    """A tester's click on Unsubscribe (or their mailbox's one-click button) in a test send rendered for
    a real customer must not unsubscribe that customer."""
    await _group(client, marketer_headers)
    template = GOOD | {"subscription_group": "newsletter"}
    assert (await client.post("/api/templates", json=template, headers=marketer_headers)).status_code == 201
    ann = await add_customer(sessions, email="ann@example.com", traits={"first_name": "Ann"})
    spec = {"customer_id": ann, "to": "qa@example.com"}
    assert (await client.post("/api/templates/welcome/test", json=spec, headers=marketer_headers)).is_success
    [msg] = await capture.wait_for_count(1)
    one_click = re.search(r"^List-Unsubscribe: <[^>]*?(/u/[^>]+)>", msg["raw"], re.MULTILINE).group(1)
    preview = await client.post("/api/templates/welcome/preview", json=spec, headers=marketer_headers)
    preferences = re.search(r'href="[^"]*?(/preferences/[^"]+)"', preview.json()["html"]).group(1)

    r = await client.post(
        one_click,
        content="List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 200 and "test email" in r.text
    assert "test email" in (await client.get(one_click)).text
    saved = await client.post(preferences, content="unsubscribe_all=1")
    assert saved.status_code == 200 and "test email" in saved.text
    prefs = (await client.get(f"/api/customers/{ann}/subscriptions", headers=marketer_headers)).json()
    assert prefs["groups"][0]["subscribed"] is True and prefs["unsubscribed_from_all"] is False


async def test_tampered_tokens_are_refused(client, marketer_headers, sessions, links):
    await _group(client, marketer_headers)
    ann = await add_customer(sessions, email="ann@example.com", traits={})
    bob = await add_customer(sessions, email="bob@example.com", traits={})
    token = links.unsubscribe_url(ann, "newsletter").rsplit("/", 1)[1]
    body, mac = token.split(".")
    forged_body = links.unsubscribe_url(bob, "newsletter").rsplit("/", 1)[1].split(".")[0]
    pref_token = links.preferences_url(ann).rsplit("/", 1)[1]
    for bad in [f"{forged_body}.{mac}", f"{body}.{mac[:-2]}AA", "garbage", f"{body}.", pref_token]:
        r = await client.post(f"/u/{bad}")
        assert r.status_code == 403, (bad, r.status_code)
        assert "not valid" in r.text
    prefs = (await client.get(f"/api/customers/{bob}/subscriptions", headers=marketer_headers)).json()
    assert prefs["groups"][0]["subscribed"] is True


async def test_preference_page_escapes_everything_and_saves_choices(
    client, marketer_headers, sessions, links
):
    await _group(client, marketer_headers, "offers", '<script>alert("x")</script> Offers')
    await _group(client, marketer_headers, "news", "News")
    cid = await add_customer(sessions, email="ann@example.com", traits={})
    url = links.preferences_url(cid).removeprefix(links._base)
    page = await client.get(url)
    assert page.status_code == 200
    assert "<script>" not in page.text and "&lt;script&gt;" in page.text
    await _save(client, url, await opened_preferences(client, url), "group=news")
    prefs = (await client.get(f"/api/customers/{cid}/subscriptions", headers=marketer_headers)).json()
    assert {g["id"]: g["subscribed"] for g in prefs["groups"]} == {"news": True, "offers": False}
    await _save(client, url, await opened_preferences(client, url), "group=news&unsubscribe_all=1")
    prefs = (await client.get(f"/api/customers/{cid}/subscriptions", headers=marketer_headers)).json()
    assert prefs["unsubscribed_from_all"] is True


async def test_saving_the_preference_page_records_only_the_choices_the_person_changed(
    client, marketer_headers, sessions, links
):
    for gid, opt_in in (("news", False), ("offers", False), ("vip", True)):
        r = await client.post(
            "/api/subscription-groups",
            json={"id": gid, "name": gid.title(), "opt_in": opt_in},
            headers=marketer_headers,
        )
        assert r.status_code == 201, r.text
    cid = await add_customer(sessions, email="ann@example.com", traits={})
    url = links.preferences_url(cid).removeprefix(links._base)
    # The page showed news and offers ticked (opt-out groups) and vip not (opt-in): Ann unticks offers.
    await _save(client, url, await opened_preferences(client, url), "group=news")
    # Saving again as it now shows changes nothing more.
    await _save(client, url, await opened_preferences(client, url), "group=news")

    async with sessions() as session:
        stored = (await session.execute(select(Subscription.group_id, Subscription.subscribed))).all()
        changes = (await session.scalars(select(Event).where(Event.name == SUBSCRIPTION_CHANGED))).all()
    assert [tuple(row) for row in stored] == [("offers", False)]
    assert [(e.properties["group_id"], e.properties["subscribed"]) for e in changes] == [("offers", False)]
    prefs = (await client.get(f"/api/customers/{cid}/subscriptions", headers=marketer_headers)).json()
    assert {g["id"]: g["subscribed"] for g in prefs["groups"]} == {
        "news": True,
        "offers": False,
        "vip": False,
    }
    assert prefs["unsubscribed_from_all"] is False

    # A group she did not touch keeps following its default: making news opt-in stops her news.
    r = await client.put("/api/subscription-groups/news", json={"opt_in": True}, headers=marketer_headers)
    assert r.status_code == 200, r.text
    prefs = (await client.get(f"/api/customers/{cid}/subscriptions", headers=marketer_headers)).json()
    assert {g["id"]: g["subscribed"] for g in prefs["groups"]}["news"] is False


async def test_a_preference_page_opened_before_a_one_click_unsubscribe_does_not_undo_it(
    client, marketer_headers, sessions, links
):
    """Ann opens her preference page, unsubscribes from news with the button in an email (or another
    tab), then saves the page she had open with its boxes untouched: she stays unsubscribed. What she
    does change on that page is recorded."""
    await _group(client, marketer_headers, "news", "News")
    await _group(client, marketer_headers, "offers", "Offers")
    cid = await add_customer(sessions, email="ann@example.com", traits={})
    url = links.preferences_url(cid).removeprefix(links._base)
    opened = await opened_preferences(client, url)  # news and offers ticked, not unsubscribed from all

    one_click = links.unsubscribe_url(cid, "news").removeprefix(links._base)
    r = await client.post(one_click, content="List-Unsubscribe=One-Click", headers=FORM)
    assert r.status_code == 200
    await _save(client, url, opened, "group=news&group=offers")

    async def groups():
        got = (await client.get(f"/api/customers/{cid}/subscriptions", headers=marketer_headers)).json()
        return {g["id"]: g["subscribed"] for g in got["groups"]}, got["unsubscribed_from_all"]

    assert await groups() == ({"news": False, "offers": True}, False)
    async with sessions() as session:
        assert await subscriptions.blocked(session, {cid: "ann@example.com"}, "marketing", "news") == {
            cid: "unsubscribed from news"
        }

    # The same for all marketing: an unsubscribe from all made meanwhile survives the stale page.
    opened = await opened_preferences(client, url)
    everything = links.unsubscribe_url(cid, None).removeprefix(links._base)
    assert (await client.post(everything, content="List-Unsubscribe=One-Click", headers=FORM)).is_success
    await _save(client, url, opened, "group=offers")
    assert (await groups())[1] is True
    async with sessions() as session:
        assert await subscriptions.blocked(session, {cid: "ann@example.com"}, "marketing", None)

    # A box she really changes counts: she ticks news again and unticks "all".
    await _save(client, url, await opened_preferences(client, url), "group=news&group=offers")
    assert await groups() == ({"news": True, "offers": True}, False)
    # and unticking offers on a page opened before that save is hers too.
    await _save(client, url, opened, "")
    assert (await groups())[0]["offers"] is False


@pytest.mark.parametrize(
    "body",
    [
        "group=news",  # no record of what the page showed
        "shown=news%3D1&group=news",
        "shown_all=1&shown_all=0&shown=news%3D1",
        "shown_all=yes&shown=news%3D1",
        "shown_all=0&shown=news",
        "shown_all=0&shown=news%3D2",
        "shown_all=0&shown=%3D1",
        "shown_all=0&shown=news%3D1&shown=news%3D0",
        "%ff%fe\x00garbage",
        "",
    ],
)
async def test_a_preference_form_that_cannot_be_read_is_refused_with_a_page_and_changes_nothing(
    client, marketer_headers, sessions, links, body
):
    await _group(client, marketer_headers, "news", "News")
    cid = await add_customer(sessions, email="ann@example.com", traits={})
    url = links.preferences_url(cid).removeprefix(links._base)
    r = await client.post(url, content=body, headers=FORM)
    assert r.status_code == 400 and "not saved" in r.text
    assert r.headers["content-type"].startswith("text/html")
    async with sessions() as session:
        assert (await session.scalars(select(Subscription))).all() == []
        assert (await session.scalars(select(Event).where(Event.name == SUBSCRIPTION_CHANGED))).all() == []


async def test_feedback_webhook_needs_an_admin_key_and_feeds_suppressions(
    client, admin_headers, marketer_headers
):
    batch = {
        "events": [
            {
                "type": "bounce",
                "email": "gone@example.com",
                "bounce_type": "permanent",
                "detail": "550 5.1.1",
            },
            {"type": "bounce", "email": "full@example.com", "bounce_type": "transient"},
            {"type": "complaint", "email": "angry@example.com"},
        ]
    }
    assert (await client.post("/api/webhooks/email-feedback", json=batch)).status_code == 401
    assert (
        await client.post("/api/webhooks/email-feedback", json=batch, headers=marketer_headers)
    ).status_code == 403
    r = await client.post("/api/webhooks/email-feedback", json=batch, headers=admin_headers)
    assert r.status_code == 200 and r.json() == {"suppressed": 2, "ignored": 1}
    listed = (await client.get("/api/suppressions", headers=marketer_headers)).json()
    assert {(s["address"], s["reason"]) for s in listed} == {
        ("gone@example.com", "bounced"),
        ("angry@example.com", "complained"),
    }
    r = await client.post(
        "/api/webhooks/email-feedback",
        json={"events": [{"type": "bounce", "email": "x\r\n@y"}]},
        headers=admin_headers,
    )
    assert r.status_code == 422 and r.json()["detail"][0]["field"].startswith("events.0.email")


async def test_a_suppression_of_an_address_with_a_slash_can_be_lifted(
    client, marketer_headers, admin_headers
):
    """'/' is allowed in a local part: the suppression it got must be reachable by DELETE too."""
    r = await client.post(
        "/api/suppressions",
        json={"address": "sales/eu@example.com", "reason": "unsubscribed"},
        headers=marketer_headers,
    )
    assert r.status_code == 204, r.text
    r = await client.delete("/api/suppressions/sales%2Feu@example.com", headers=admin_headers)
    assert r.status_code == 204, r.text
    assert (await client.get("/api/suppressions", headers=marketer_headers)).json() == []
    r = await client.delete("/api/suppressions/sales%2Feu@example.com", headers=admin_headers)
    assert r.status_code == 404 and "'sales/eu@example.com' is not suppressed" in r.text


async def test_a_variant_saved_with_an_underscore_tag_is_chosen(client, marketer_headers, sessions):
    """The locale pattern takes 'pt_BR' as well as 'pt-BR'; customers' locales are stored 'pt-BR'."""
    r = await client.post(
        "/api/templates",
        json=GOOD | {"variants": {"pt_BR": {"subject": "Olá {{ traits.first_name }}"}}},
        headers=marketer_headers,
    )
    assert r.status_code == 201, r.text
    cid = await add_customer(sessions, email="ana@example.com", traits={"first_name": "Ana"}, locale="pt-BR")
    for body in [{"customer_id": cid}, {"traits": {"first_name": "Ana"}, "locale": "pt-BR"}]:
        r = await client.post("/api/templates/welcome/preview", json=body, headers=marketer_headers)
        assert r.status_code == 200 and r.json()["subject"] == "Olá Ana", (body, r.text)


async def test_a_preview_and_a_test_send_render_a_journey_nodes_group_override(
    client, marketer_headers, capture, settings
):
    """A journey's send_email node may send a template under another subscription group; the preview
    and the test send show what that node's recipients get: its group in the footer and the links."""
    await _group(client, marketer_headers)
    await _group(client, marketer_headers, "offers", "Weekly offers")
    template = GOOD | {"subscription_group": "newsletter"}
    assert (await client.post("/api/templates", json=template, headers=marketer_headers)).status_code == 201
    secret = settings.secret_key.get_secret_value()

    def group_of(link: str) -> str:
        return subscriptions.read_unsubscribe_token(secret, link.rpartition("/u/")[2])[1]

    for override, name, group in [
        ({}, "Newsletter", "newsletter"),
        ({"subscription_group": "offers"}, "Weekly offers", "offers"),
    ]:
        r = await client.post("/api/templates/welcome/preview", json=override, headers=marketer_headers)
        assert r.status_code == 200, r.text
        assert f"you subscribed to {name}." in r.json()["html"].replace("\n", " ")
        assert group_of(re.search(r'href="([^"]*/u/[^"]+)"', r.json()["html"]).group(1)) == group
        spec = {"to": "qa@example.com"} | override
        assert (
            await client.post("/api/templates/welcome/test", json=spec, headers=marketer_headers)
        ).is_success
        sent = (await capture.wait_for_count(1 if not override else 2))[0]
        assert group_of(dict(sent["headers"])["List-Unsubscribe"].strip("<>")) == group
        assert f"you subscribed to {name}." in sent["html"].replace("\n", " ")

    r = await client.post(
        "/api/templates/welcome/preview", json={"subscription_group": "nope"}, headers=marketer_headers
    )
    assert r.status_code == 422 and r.json()["detail"]["field"] == "subscription_group"


async def test_the_ledger_of_a_journey_pages_newest_first_through_its_own_sends(
    client, marketer_headers, sessions
):
    """The journey filter reads its page by id alone and then the rows: same page, same order."""
    ann = await add_customer(sessions, email="ann@example.com", traits={})
    bob = await add_customer(sessions, email="bob@example.com", traits={})
    sends = [("onboarding", ann), ("winback", ann), ("onboarding", bob), (None, bob)] * 3
    async with transaction(sessions) as session:
        for i, (journey, customer) in enumerate(sends):
            session.add(
                Message(
                    idempotency_key=f"k{i}",
                    message_id=f"<m{i}@test>",
                    customer_id=customer,
                    journey_id=journey,
                    status="sent",
                    attempts=1,
                    meta={},
                )
            )

    async def page(**params) -> list[tuple]:
        r = await client.get("/api/messages", params=params, headers=marketer_headers)
        assert r.status_code == 200, r.text
        return [(m["journey_id"], m["customer_id"], m["id"]) for m in r.json()]

    everything = await page(limit=500)
    onboarding = [m for m in everything if m[0] == "onboarding"]
    assert len(onboarding) == 6 and [m[2] for m in onboarding] == sorted(
        (m[2] for m in onboarding), reverse=True
    )
    first = await page(journey_id="onboarding", limit=4)
    assert first == onboarding[:4]
    assert await page(journey_id="onboarding", limit=4, before_id=first[-1][2]) == onboarding[4:]
    assert await page(journey_id="onboarding", customer_id=bob) == [m for m in onboarding if m[1] == bob]
    assert await page(journey_id="nosuch") == []


async def test_a_preference_form_longer_than_the_limit_is_refused_not_cut_short(
    client, marketer_headers, sessions, links
):
    """A form beyond 64 KB was cut at 64 KB and saved: the ticks after the cut were lost, which
    unsubscribed the person from what they had left ticked. It is now refused whole, changing nothing."""
    await _group(client, marketer_headers, "news", "News")
    cid = await add_customer(sessions, email="ann@example.com", traits={})
    url = links.preferences_url(cid).removeprefix(links._base)
    opened = await opened_preferences(client, url)  # news ticked
    padded = f"{opened}&note={'x' * 70_000}&group=news"  # e.g. a long field a browser extension adds
    r = await client.post(url, content=padded, headers=FORM)
    assert r.status_code == 400 and "not saved" in r.text, r.text
    assert r.headers["content-type"].startswith("text/html")
    async with sessions() as session:
        assert (await session.scalars(select(Subscription))).all() == []
    await _save(client, url, opened, "group=news")  # the page's own form is read as ever
