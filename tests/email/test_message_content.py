"""What a receiving mailbox gets, read back from the capture server: links, text part and footer."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from activities.contracts import SendEmailRequest
from tests.email.helpers import add_customer, add_template, run_activity


def _req(customer_id: int, template: str = "welcome", key: str = "wf/1/send/1") -> SendEmailRequest:
    return SendEmailRequest(
        idempotency_key=key, customer_id=customer_id, template_id=template, template_version=1
    )


async def test_every_kind_of_link_survives_tracking_and_a_click_lands_on_exactly_its_url(
    sessions, activities, capture, client
):
    offer = "https://shop.example/o?who=ann's&id=42#top"  # per customer; the sandbox escapes ' and &
    cid = await add_customer(sessions, email="ann@example.com", traits={"offer": offer})
    await add_template(
        sessions,
        html='<p><a href="{{ traits.offer }}">Your offer</a> <a href="HTTPS://Shop.example/A%2FB?x=1&amp;y=2">Up</a>'
        ' <a href="mailto:help@acme.example?subject=Hi%20there">Mail</a> <a href="tel:+4930123">Call</a>'
        ' <a href="#top">Top</a></p>',
    )
    await run_activity(activities.send_email, _req(cid))
    [msg] = await capture.wait_for_count(1)
    html = msg["html"]
    for untouched in ("mailto:help@acme.example?subject=Hi%20there", "tel:+4930123", 'href="#top"'):
        assert untouched in html
    assert html.count("/o/") == 1 and "/o/" not in msg["text"]
    tracked = re.findall(r'href="([^"]+/c/[^"]+)"', html)
    landed = [(await client.get(urlsplit(url).path)).headers["location"] for url in tracked]
    assert landed == [offer, "HTTPS://Shop.example/A%2FB?x=1&y=2"]


async def test_a_stylesheet_the_email_loads_is_not_made_a_click(sessions, activities, capture):
    """Mail apps fetch a <link> on opening: through the click redirect, every open became a click."""
    cid = await add_customer(sessions, email="ann@example.com", traits={})
    font = "https://fonts.example/css2?family=Inter&display=swap"
    await add_template(
        sessions,
        html=f'<link rel="stylesheet" href="{font.replace("&", "&amp;")}">'
        '<p><a href="https://shop.example/">Shop</a></p>',
    )
    await run_activity(activities.send_email, _req(cid))
    [msg] = await capture.wait_for_count(1)
    assert f'<link rel="stylesheet" href="{font.replace("&", "&amp;")}">' in msg["html"]
    assert len(re.findall(r'href="[^"]+/c/[^"]+"', msg["html"])) == 1  # the shop link is still tracked


async def test_the_text_part_derived_from_html_reads_like_the_html(sessions, activities, capture):
    cid = await add_customer(sessions, email="ann@example.com", traits={"first_name": "Ann"})
    await add_template(
        sessions,
        html="<p>Hello <strong>{{ traits.first_name }}</strong>, your <em>order</em>:</p>"
        "<table><tr><th>Item</th><th>Price</th></tr><tr><td>Shoes</td><td>&euro;40</td></tr></table>"
        "<ul><li>Free returns</li><li>Fast delivery</li></ul>"
        '<p>Acme Shoes<br/>1 Main St</p><p><a href="TEL:+4930123">Call us</a> or'
        ' <a href="HTTPS://shop.example/help">read the help</a>.</p>'
        '<p>Visit <a href="https://shop.example/">https://shop.example/</a></p>',
    )
    await run_activity(activities.send_email, _req(cid))
    [msg] = await capture.wait_for_count(1)
    body = msg["text"].split("\n-- \n")[0]  # the marketer's part, above the footer
    assert body.splitlines() == [
        "Hello Ann, your order:",
        "",
        "Item Price",
        "Shoes €40",
        "",
        "- Free returns",
        "- Fast delivery",
        "",
        "Acme Shoes",
        "1 Main St",
        "",
        "Call us (TEL:+4930123) or read the help (HTTPS://shop.example/help).",
        "",
        "Visit https://shop.example/",
    ]


async def test_a_variant_with_its_own_html_gets_a_text_part_in_its_own_language(
    sessions, activities, capture
):
    cid = await add_customer(sessions, email="jean@example.com", traits={"first_name": "Jean"}, locale="fr")
    await add_template(
        sessions,
        text="Hello {{ traits.first_name }}",
        variants={"fr": {"subject": "Salut", "html": "<p>Bonjour {{ traits.first_name }}</p>"}},
    )
    await run_activity(activities.send_email, _req(cid))
    [msg] = await capture.wait_for_count(1)
    assert "Bonjour Jean" in msg["html"]
    assert msg["text"].startswith("Bonjour Jean\n") and "Hello" not in msg["text"]


async def test_the_date_is_written_in_the_current_syntax_of_rfc_5322(sessions, activities, capture):
    """The zone "GMT" is obsolete syntax RFC 5322 says a sender must not generate; "+0000" is current."""
    cid = await add_customer(sessions, email="ann@example.com", traits={})
    await add_template(sessions)
    await run_activity(activities.send_email, _req(cid))
    [msg] = await capture.wait_for_count(1)
    date = re.search(r"^Date: (.*)\r$", msg["raw"], re.MULTILINE).group(1)
    assert re.fullmatch(r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} \+0000", date), date
