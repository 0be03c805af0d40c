"""The customer's satisfaction page, reached through the signed link in a follow-up email.

GET (and HEAD) shows the question (a mail scanner opening the link records nothing); POST records the
rating.
Everything shown is escaped by Jinja's autoescape, and the page allows no script.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment

from api.deps import Session, get_settings
from api.forms import read_form
from api.pages import get_and_head
from config.settings import Settings
from domain.cases import service as cases
from domain.customers import service as customers
from domain.db import stored_id
from domain.errors import DomainError

router = APIRouter(tags=["csat"], include_in_schema=False)

_PAGE = Environment(autoescape=True).from_string(
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>How did we do?</title>
<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem}
button{font-size:1.25rem;margin:.2rem;padding:.5rem .9rem}button.chosen{outline:3px solid #2563eb}</style>
</head><body>
{% if error %}<h1>Sorry</h1><p>{{ error }}</p>
{% elif recorded %}<h1>Thank you{% if name %}, {{ name }}{% endif %}!</h1>
<p>We recorded your rating: {{ recorded }} out of 5.</p>
{% else %}<h1>{% if name %}{{ name }}, how{% else %}How{% endif %} did we do?</h1>
<p>Rate how we handled your request, from 1 (poor) to 5 (excellent).</p>
<form method="post" action="/csat/{{ case_id }}"><input type="hidden" name="sig" value="{{ sig }}">
{% for n in range(1, 6) %}<button name="rating" value="{{ n }}"
{%- if n == chosen %} class="chosen"{% endif %}>{{ n }}</button>{% endfor %}
</form>{% endif %}
</body></html>"""
)

_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _page(status: int = 200, **values) -> HTMLResponse:
    return HTMLResponse(_PAGE.render(**values), status_code=status, headers=_HEADERS)


def broken_link(status: int) -> HTMLResponse:
    """The page for a path or method no route under ``/csat`` takes (api.errors)."""
    return _page(status, error="this rating link is not valid")


def _case_id(text: str) -> int:
    """The link's case id; anything else (no number, beyond 64 bits) is 0, which no case has, so the
    link gets the page's "not valid" rather than the API's JSON 422. A link has one spelling, as the
    other signed links do (domain.subscriptions.tokens): ``/csat/02`` is no link we sent."""
    found = stored_id(text)
    return found if found is not None and str(found) == text else 0


# The one spelling of each rating, as the page's buttons and a link's `&rating=` write it.
_RATINGS = {str(n): n for n in range(1, 6)}


def _rating(text: str) -> int:
    """The rating, or 0 (which rate() answers with the page's "1 to 5", and the form preselects none
    for) for any other text: '05' as '+5', ' 5' or '²' (str.isdigit takes it, int() refuses it)."""
    return _RATINGS.get(text, 0)


async def _name(session, customer_id: int) -> str | None:
    profile = await customers.get_profile(session, customer_id)
    traits = (profile or {}).get("traits", {})
    name = traits.get("first_name") or traits.get("name")
    return name if isinstance(name, str) else None


@get_and_head(router, "/csat/{case_id}", response_class=HTMLResponse)
async def csat_form(
    case_id: str,
    session: Session,
    settings: Annotated[Settings, Depends(get_settings)],
    sig: str = Query(""),
    rating: str = Query(""),
) -> HTMLResponse:
    # Every parameter is read as text: the link is the customer's, so a mangled one gets this page.
    try:
        case = await cases.csat_case(session, settings, _case_id(case_id), sig)
    except DomainError as err:
        return _page(err.status_code, error=str(err.detail))
    # A rating the page has no button for only preselects none: the customer picks one there.
    return _page(
        case_id=case.id, sig=sig, chosen=_rating(rating), name=await _name(session, case.customer_id)
    )


@router.post("/csat/{case_id}", response_class=HTMLResponse)
async def csat_record(
    case_id: str,
    request: Request,
    session: Session,
    settings: Annotated[Settings, Depends(get_settings)],
) -> HTMLResponse:
    form = await read_form(request, max_fields=10)
    if form is None:  # far longer than the page's form, or more fields: not read further, nothing recorded
        return _page(400, error="this form could not be read; open the link in the email again")
    # The page's form sends the signature as a field; a POST to the link itself (the README's
    # `POST /csat/{case_id}?sig=...`, e.g. a rating button of one's own) carries it in the query.
    sig = (form.get("sig") or [request.query_params.get("sig", "")])[0]
    try:
        rating = _rating((form.get("rating") or [""])[0])
        case = await cases.rate(session, settings, _case_id(case_id), sig, rating)
    except DomainError as err:
        detail = err.detail["problem"] if isinstance(err.detail, dict) else err.detail
        return _page(err.status_code, error=f"rating {detail}" if isinstance(err.detail, dict) else detail)
    return _page(recorded=case.csat_rating, name=await _name(session, case.customer_id))
