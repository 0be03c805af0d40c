"""Click tracking reads the HTML as a mail app does: every link it would follow is tracked, whatever
its spelling; text that only looks like a link is not touched; nothing else of the message changes."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from domain.email import tracking
from tests.email.helpers import add_customer, add_template, run_activity
from tests.email.test_message_content import _req

BASE, SECRET = "https://api.acme.example", "s" * 32
_CLICK = re.compile(rf"{re.escape(BASE)}/c/([A-Za-z0-9_.-]+)")


def _track(html: str) -> str:
    return tracking.track_links(html, base=BASE, secret=SECRET, customer_id=7, ref="broadcast/b/7~sale")


def _clicks(html: str) -> list[str]:
    """The URLs the click links of ``html`` redirect to, in order."""
    return [tracking.read_click(SECRET, token)[2] for token in _CLICK.findall(html)]


def test_links_in_minified_and_hand_written_html_are_tracked():
    # each of these went out untracked: its clicks were never recorded
    for link, url in [
        ("<a href=https://acme.com/x>x</a>", "https://acme.com/x"),  # minified: no quotes
        ("<a class=btn href=https://acme.com/x?a=1&amp;b=2>x</a>", "https://acme.com/x?a=1&b=2"),
        ('<a href = "https://acme.com/x">x</a>', "https://acme.com/x"),
        ("<a href\t=\n'https://acme.com/x'>x</a>", "https://acme.com/x"),
        (
            '<a\n  class="btn"\n  href\n    ="https://acme.com/x"\n  style="color:red">x</a>',
            "https://acme.com/x",
        ),
        ("""<a href="https://acme.com/o?who=ann's">x</a>""", "https://acme.com/o?who=ann's"),
        ("""<a href='https://acme.com/"quoted"'>x</a>""", 'https://acme.com/"quoted"'),
        ('<a href=" https://acme.com/x ">x</a>', "https://acme.com/x"),  # a browser trims the spaces
        ('<map><area shape="rect" coords="0,0,9,9" href=https://acme.com/x></map>', "https://acme.com/x"),
    ]:
        out = _track(link)
        assert _clicks(out) == [url], link
        assert "acme.com/" not in out, link


def test_upper_case_tags_and_attributes_are_tracked():
    out = _track('<A HREF="https://acme.com/x">x</A> <a Href=https://acme.com/y>y</a>')
    assert _clicks(out) == ["https://acme.com/x", "https://acme.com/y"]
    assert out.startswith('<A HREF="https://api.acme.example/c/') and out.endswith(">y</a>")


def test_text_that_only_looks_like_a_link_is_left_byte_for_byte():
    for html in [
        '<!-- old button: <a href="https://acme.com/x">x</a> -->',
        '<style>a[href="https://acme.com/x"] { color: red }</style>',  # a CSS selector, not a link
        "<script>var a = '<a href=\"https://acme.com/x\">';</script>",
        """<div data-x='href="https://acme.com/x"'>x</div>""",
        '<img alt=\'see href="https://acme.com/x"\' src="https://acme.com/i.png">',
        '<p>Write href="https://acme.com/x" in your page</p>',
        '<a data-href="https://acme.com/x" title="href=https://acme.com/y">no href</a>',
        '<title><a href="https://acme.com/x"></title>',
        '<link rel="stylesheet" href=https://fonts.example/css><base href="https://acme.com/">',
    ]:
        assert _track(html) == html, html


def test_outlook_conditional_comments_are_read_as_outlook_reads_them():
    """Outlook renders the content of ``<!--[if mso]>``: its bulletproof button (a VML shape whose href
    is the link) is what Outlook readers click. An ordinary comment stays a comment."""
    html = (
        "<!--[if mso]>"
        '<v:roundrect xmlns:v="urn:schemas-microsoft-com:vml" href="https://acme.com/sale" arcsize="10%">'
        "<w:anchorlock/><center>Shop</center></v:roundrect><![endif]-->"
        '<!--[if !mso]><!--><a href="https://acme.com/sale" class="btn">Shop</a><!--<![endif]-->'
        '<!--[if gte mso 9]><table><tr><td><a href="https://acme.com/outlook">o</a></td></tr></table>'
        "<![endif]-->"
        '<!-- <a href="https://acme.com/draft">not sent</a> -->'
    )
    out = _track(html)
    assert _clicks(out) == ["https://acme.com/sale", "https://acme.com/sale", "https://acme.com/outlook"]
    assert out.count("<!--[if mso]>") == 1 and out.endswith(
        '<!-- <a href="https://acme.com/draft">not sent</a> -->'
    )


def test_only_the_href_values_change_in_a_whole_newsletter():
    html = _newsletter(links=60)
    out = _track(html)
    assert len(_clicks(out)) == 60
    # put each original URL back where its click link is: the document is the one we were given
    originals = iter(re.findall(r'href=(?:"[^"]*"|[^\s>]+)', html))  # quoted and bare, as written
    restored = re.sub(r'href="https://api\.acme\.example/c/[^"]+"', lambda _: next(originals), out)
    assert restored == html


def test_character_references_are_decoded_as_a_browser_decodes_an_attribute():
    """The link is signed, and the redirect goes, to the URL the reader's browser would open."""
    out = _track(
        '<a href="https://acme.com/s?a=1&amp;b=2&#38;c=3&#x26;d=&quot;4&quot;">s</a>'
        # a reference missing its ";" before a letter, digit or "=" is text in an attribute: a hand-written
        # "&region=" or "&copy=" is a parameter, not "®ion=" or "©="
        '<a href="https://acme.com/s?q=1&region=eu&copy=2&not&para;">t</a>'
    )
    assert _clicks(out) == [
        'https://acme.com/s?a=1&b=2&c=3&d="4"',
        "https://acme.com/s?q=1&region=eu&copy=2¬¶",
    ]


def test_our_own_links_and_other_schemes_stay_as_they_are():
    html = (
        f"<a href={BASE}/u/abc>unsubscribe</a> <a href='{BASE}/preferences/x'>prefs</a>"
        ' <a href=mailto:help@acme.example>mail</a> <a href="tel:+4930123">call</a> <a href=#top>top</a>'
        ' <a href="javascript:alert(1)">js</a> <a href=>empty</a> <a>none</a>'
    )
    assert _track(html) == html


def test_broken_html_never_fails_the_send():
    for html in [
        '<a href="https://acme.com/x',  # the message ends inside the tag: no link for a browser either
        "<!-- never closed <a href=https://acme.com/x>",
        "<a href=https://acme.com/x",
        "<script><a href=https://acme.com/x>",
        "<",
        "</",
        "<!",
        "<!--[if mso]>",
        "<a href",
        "<a href=",
    ]:
        assert _clicks(_track(html)) == [], html
    # the stdlib parser raises on "<![foo]>"; it is a bogus comment, and "<!-->" an empty one: what
    # follows each is a link
    for html in ("<![foo]><a href=https://acme.com/x>", "<!--><a href=https://acme.com/x>"):
        assert _clicks(_track(html)) == ["https://acme.com/x"], html


async def test_a_minified_newsletter_sent_and_clicked_lands_on_every_link(
    sessions, activities, capture, client
):
    cid = await add_customer(sessions, email="ann@example.com", traits={})
    await add_template(
        sessions,
        html="<table><tr><td><a href=https://shop.example/new?utm_source=mail&amp;region=eu>New</a>"
        "<a href = 'https://shop.example/it\"s'>Quote</a>"
        "<!--[if mso]><v:roundrect href=https://shop.example/sale><![endif]-->"
        "<div data-x='href=\"https://shop.example/not-a-link\"'></div></td></tr></table>",
    )
    await run_activity(activities.send_email, _req(cid))
    [msg] = await capture.wait_for_count(1)
    html = msg["html"]
    assert "data-x='href=\"https://shop.example/not-a-link\"'" in html
    tracked = re.findall(r"""href\s*=\s*["'](https?://[^"']+/c/[^"']+)["']""", html)
    landed = [(await client.get(urlsplit(url).path)).headers["location"] for url in tracked]
    assert landed == [
        "https://shop.example/new?utm_source=mail&region=eu",
        "https://shop.example/it%22s",  # the redirect's Location header percent-encodes the quote
        "https://shop.example/sale",
    ]


def _newsletter(links: int) -> str:
    """About 50 KB of the HTML email builders send: nested tables, inline styles, conditional comments,
    a <style> block, unquoted and quoted links."""
    head = (
        '<!DOCTYPE html><html xmlns:v="urn:schemas-microsoft-com:vml"><head><meta charset="utf-8">'
        "<!--[if mso]><xml><o:OfficeDocumentSettings><o:PixelsPerInch>96</o:PixelsPerInch>"
        "</o:OfficeDocumentSettings></xml><![endif]-->"
        "<style>a[href^=tel]{color:inherit} .btn:hover{opacity:.9} @media (max-width:600px){.col{width:100%}}"
        '</style></head><body style="margin:0">'
    )
    block = (
        '<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0" '
        'style="border-collapse:collapse;mso-table-lspace:0pt;mso-table-rspace:0pt"><tr>'
        '<td class="col" style="padding:24px 32px;font-family:Helvetica,Arial,sans-serif;font-size:16px;'
        'line-height:24px;color:#333333">'
        '<img src="https://cdn.example/p/{n}.jpg" width="536" alt="Product {n}" style="display:block">'
        '<h2 style="margin:0 0 8px">Product {n}: comfortable, durable, and now 20&nbsp;% off</h2>'
        '<p style="margin:0 0 16px">Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do '
        "eiusmod tempor incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud "
        "exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat.</p>"
        "{link}</td></tr></table>\n"
    )
    quoted = (
        '<a href="https://shop.example/p/{n}?utm_source=mail&amp;utm_campaign=spring" class="btn">Shop</a>'
    )
    bare = "<a href=https://shop.example/p/{n}?utm_medium=email class=btn>Shop</a>"
    body = "".join(block.format(n=n, link=(quoted if n % 2 else bare).format(n=n)) for n in range(links))
    return head + body + "</body></html>"
