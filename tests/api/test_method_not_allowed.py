"""A method no route of a path takes is a 405 whose ``Allow`` lists every method the path's routes take
(RFC 9110 15.5.6), not only those of the first route the router met: a client or link checker reading
it learns what the resource supports. The body stays the API's JSON, or a link's page for a browser."""

from __future__ import annotations

import pytest

BROWSER = {"accept": "text/html,application/xhtml+xml"}
# (method, path, every method its routes take): an unsubscribe link (GET, its HEAD from another route,
# the one-click POST from a third), a management resource, an ingestion endpoint with only POST.
REFUSED = [
    ("PUT", "/u/NDI6bmV3c2xldHRlcg.ItABlkDi19TaGJ9gYXo4EA", {"GET", "HEAD", "POST"}),
    ("PATCH", "/api/segments/7", {"GET", "PUT", "DELETE"}),
    ("GET", "/v1/track", {"POST"}),
]


def _allow(answer) -> list[str]:
    return [method.strip() for method in answer.headers["allow"].split(",")]


@pytest.mark.parametrize(("method", "path", "methods"), REFUSED)
async def test_a_405_allows_every_method_the_paths_routes_take(client, method, path, methods):
    answer = await client.request(method, path)
    assert answer.status_code == 405
    assert answer.json()["error"] == "method_not_allowed"
    allowed = _allow(answer)
    assert set(allowed) == methods and len(allowed) == len(methods)
    for each in methods - {"HEAD"}:  # each listed method is routed there (not a 405)
        assert (await client.request(each, path)).status_code != 405


async def test_a_browser_on_a_link_gets_its_page_with_the_same_allow(client):
    path = "/preferences/NDI.ItA"
    page = await client.request("DELETE", path, headers=BROWSER)
    assert page.status_code == 405
    assert page.headers["content-type"].startswith("text/html") and "not valid" in page.text
    assert set(_allow(page)) == {"GET", "HEAD", "POST"}
    assert page.headers["allow"] == (await client.delete(path)).headers["allow"]
