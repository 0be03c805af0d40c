"""A browser following a mangled link from an email (a path no route has, a method none takes) gets the
page's own "not valid", in the look of the pages there; API clients keep the standard JSON. The open
pixel (``/o``) is an image no one browses to: it keeps the JSON."""

from __future__ import annotations

import pytest

BROWSER = {"accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
# (method, path, status, the title of the page a browser gets)
LINK_PAGE, CSAT_PAGE = "<title>Link not valid</title>", "<title>How did we do?</title>"
UNSUBSCRIBE_PAGE = CLICK_PAGE = LINK_PAGE
MANGLED = [
    ("GET", "/u/", 404, UNSUBSCRIBE_PAGE),
    ("GET", "/u", 404, UNSUBSCRIBE_PAGE),
    ("GET", "/u/NDI6bmV3c2xldHRlcg/ItABlkDi19TaGJ9gYXo4EA", 404, UNSUBSCRIBE_PAGE),
    ("PUT", "/u/NDI6bmV3c2xldHRlcg.ItABlkDi19TaGJ9gYXo4EA", 405, UNSUBSCRIBE_PAGE),
    ("GET", "/preferences/", 404, UNSUBSCRIBE_PAGE),
    ("DELETE", "/preferences/NDI.ItA", 405, UNSUBSCRIBE_PAGE),
    ("GET", "/csat/", 404, CSAT_PAGE),
    ("GET", "/csat", 404, CSAT_PAGE),
    ("GET", "/csat/12/sig=abc", 404, CSAT_PAGE),
    ("PATCH", "/csat/12", 405, CSAT_PAGE),
    # A click redirect's token cut at a dot or split by a line break, or a link a scanner rewrote.
    ("GET", "/c/", 404, CLICK_PAGE),
    ("GET", "/c", 404, CLICK_PAGE),
    ("GET", "/c/eyJjIjo0Mn0/ItABlkDi19TaGJ9gYXo4EA", 404, CLICK_PAGE),
    ("POST", "/c/eyJjIjo0Mn0.ItABlkDi19TaGJ9gYXo4EA", 405, CLICK_PAGE),
    # Text no database stores is refused before the route runs (api.text_guard): a page too.
    ("GET", "/u/abc%00def", 422, UNSUBSCRIBE_PAGE),
    ("GET", "/csat/12?sig=%00", 422, CSAT_PAGE),
    ("GET", "/c/abc%00def", 422, CLICK_PAGE),
]


@pytest.mark.parametrize(("method", "path", "status", "title"), MANGLED)
async def test_a_browser_gets_the_pages_not_valid_and_an_api_client_json(client, method, path, status, title):
    page = await client.request(method, path, headers=BROWSER)
    assert page.status_code == status, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert title in page.text and "not valid" in page.text
    api = await client.request(method, path, headers={"accept": "application/json"})
    assert api.status_code == status
    assert api.json()["error"] == {404: "not_found", 405: "method_not_allowed", 422: "invalid"}[status]
    if status == 405:
        assert page.headers["allow"] == api.headers["allow"]
    assert (await client.request(method, path)).json() == api.json()  # no Accept: JSON too


@pytest.mark.parametrize(
    "path", ["/api/nothing-here", "/unsubscribe/x", "/uploads/x", "/csatx/1", "/clicks/x", "/o/x/y"]
)
async def test_a_browser_elsewhere_keeps_the_apis_json(client, path):
    answer = await client.get(path, headers=BROWSER)
    assert answer.status_code == 404
    assert answer.json()["error"] == "not_found"
