"""What the pages and links customers reach from an email share: the look of ``templates/pages``, its
headers and the "this link is not valid" page.

Every page is rendered by an autoescaping Jinja environment, so nothing from the database or the URL
can inject HTML.
"""

from __future__ import annotations

from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader

from domain.email.rendering import TEMPLATES_DIR

_pages = Environment(loader=FileSystemLoader(TEMPLATES_DIR), autoescape=True)
HEADERS = {"Cache-Control": "no-store", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"}


def page(name: str, status: int = 200, **values) -> HTMLResponse:
    html = _pages.get_template(f"pages/{name}.html").render(**values)
    return HTMLResponse(html, status_code=status, headers=HEADERS)


def invalid_link(status: int, reason: str) -> HTMLResponse:
    """The page for a link we did not send: a bad signature, a token that names nothing."""
    return page("invalid_link", status, reason=reason)


def broken_link(status: int) -> HTMLResponse:
    """The page for a path or method no route of a link takes, or text no database stores (api.errors)."""
    return invalid_link(status, "this address leads to no page (the link was cut short or changed)")
