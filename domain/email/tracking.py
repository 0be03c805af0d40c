"""Engagement: a signed open pixel and signed click redirects, recorded as customer events.

Links are rewritten at send time to ``/c/{token}``; the token signs the customer, the message and the
target URL, so the redirect only ever goes to a URL that was in the message we rendered (no open
redirect) and a tampered token is refused. Opens and clicks become ``Email Opened`` / ``Email Link
Clicked`` events of the customer (first open per message, first click per link), usable in segments
and journey triggers like any tracked event.
"""

from __future__ import annotations

import hashlib
import re

from markupsafe import escape
from sqlalchemy.ext.asyncio import AsyncSession

from domain.customers import service as customers
from domain.email import hrefs
from domain.email import service as email
from domain.email.refs import message_ref as message_ref
from domain.events import service as events
from domain.events.schemas import TrackCall
from domain.subscriptions import tokens

OPENED, CLICKED = "Email Opened", "Email Link Clicked"
# Only links a reader clicks (hrefs.link_hrefs: <a>, <area>, Outlook's VML buttons), never a <link> or
# <base>: a mail app fetches a stylesheet when the message opens, so through the redirect every open
# would count as a click.
_WEB = re.compile(r"https?://.", re.IGNORECASE | re.DOTALL)
# what a browser's URL parser drops: spaces and controls around the URL, tabs and line breaks inside it
_URL_EDGES, _URL_BREAKS = "".join(map(chr, range(33))), re.compile(r"[\t\n\r]")
PIXEL_GIF = bytes.fromhex(
    "47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b"
)


def open_token(secret: str, customer_id: int, ref: str) -> str:
    return tokens.sign(secret, "open", f"{customer_id}|{ref}")


def click_token(secret: str, customer_id: int, ref: str, url: str) -> str:
    return tokens.sign(secret, "click", f"{customer_id}|{ref}|{url}")


def read_open(secret: str, token: str) -> tuple[int, str]:
    customer, ref = tokens.fields(tokens.verify(secret, "open", token), "|", 2)
    return tokens.customer_id(customer), ref


def read_click(secret: str, token: str) -> tuple[int, str, str]:
    customer, ref, url = tokens.fields(tokens.verify(secret, "click", token), "|", 3)
    return tokens.customer_id(customer), ref, url


def _ours(url: str, base: str) -> bool:
    """A link to this API (unsubscribe, preferences): the public URL itself or a path under it. Not
    every URL that merely begins with it: ``https://acme.com`` is no prefix of ``https://acme.com.au``
    or, under ``https://acme.com/mail``, of ``https://acme.com/mail-offers``."""
    return url.startswith(base) and url[len(base) : len(base) + 1] in ("", "/", "?", "#")


def track_links(html: str, *, base: str, secret: str, customer_id: int, ref: str) -> str:
    """Point every external http(s) link through the click redirect (our own links stay as they are).
    Only the href values change; every other character of the document is kept as it was."""
    out, done = [], 0
    for href in hrefs.link_hrefs(html):
        # the URL a browser follows: the sandbox escapes a URL from data (' as &#39;, & as &amp;)
        url = _URL_BREAKS.sub("", hrefs.attribute_value(html[href.start : href.end]).strip(_URL_EDGES))
        if not _WEB.match(url) or _ours(url, base):
            continue
        quote = href.quote or '"'  # an unquoted value gets quotes: escaped, it may hold "&"
        new = escape(f"{base}/c/{click_token(secret, customer_id, ref, url)}")
        out += (html[done : href.start - len(href.quote)], quote, new, quote)
        done = href.end + len(href.quote)
    return "".join(out) + html[done:] if out else html


def add_open_pixel(html: str, open_url: str) -> str:
    pixel = f'<img src="{escape(open_url)}" width="1" height="1" alt="" style="display:block;border:0">'
    at = html.rfind("</body>")
    return html[:at] + pixel + html[at:] if at >= 0 else html + pixel


async def record(
    session: AsyncSession, kind: str, customer_id: int, ref: str, url: str | None = None
) -> bool:
    """Store the engagement event (once per message, or per message and link). False: not stored (no
    such customer, or a click in transactional mail)."""
    # a link in an email sent before the customer was merged into another profile counts for that one
    customer = await customers.get_current(session, customer_id)
    if customer is None or not (customer.user_id or customer.anonymous_id):
        return False
    template_id = ref.partition("~")[2] or None
    if kind == CLICKED and await email.is_transactional(session, template_id):
        # A link in transactional mail sent while it was still tracked: it still redirects, but its URL
        # may be a credential (a password reset), which an event would keep.
        return False
    dedupe = f"{kind}/{ref}" + (f"/{hashlib.sha256(url.encode()).hexdigest()[:16]}" if url else "")
    properties = {"message_ref": ref, "template_id": template_id} | ({"url": url} if url else {})
    await events.ingest(
        session,
        [
            TrackCall(
                userId=customer.user_id,
                anonymousId=None if customer.user_id else customer.anonymous_id,
                event=kind,
                properties=properties,
                messageId=dedupe,
            )
        ],
        source_key_id=None,
    )
    return True
