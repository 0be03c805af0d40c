"""The queue in pages: a cursor walks it in its order, neither skipping nor repeating a case while
cases change between pages (claims, breaches, resolutions, new cases)."""

from __future__ import annotations

import base64
import re
from datetime import timedelta

from domain.cases import service as cases
from domain.cases.schemas import Outcome
from domain.db import transaction, utcnow
from tests.cases.helpers import make_agent, make_customer, make_team, open_case

EVERY = "status=open&status=assigned&status=pending&status=resolved"


def _next(response) -> str | None:
    link = response.headers.get("link")
    if link is None:
        return None
    match = re.fullmatch(r'<(/api/cases\?[^>]+)>; rel="next"', link)
    assert match, link
    return match.group(1)


async def _page(client, url: str, headers) -> tuple[list[int], str | None]:
    response = await client.get(url, headers=headers)
    assert response.status_code == 200, response.text
    return [c["id"] for c in response.json()], _next(response)


async def test_pages_neither_skip_nor_repeat_a_case_as_cases_change_between_them(client, sessions, settings):
    await make_team(sessions, "care")
    ann = await make_agent(sessions, "ann", "care")
    actor = cases.Actor(ann["id"], ["care"])
    customer = await make_customer(sessions, "pages-1")
    base = utcnow() - timedelta(hours=1)
    early = [await open_case(sessions, customer, "care", now=base + timedelta(minutes=i)) for i in range(5)]
    tied = [await open_case(sessions, customer, "care", now=base + timedelta(minutes=10)) for _ in range(2)]
    last = await open_case(sessions, customer, "care", now=base + timedelta(minutes=20))
    walk = [*early, *tied, last]
    h = ann["headers"]

    first, following = await _page(client, f"/api/cases?{EVERY}&limit=3", h)
    assert first == walk[:3] and following is not None and "limit=3" in following
    async with transaction(sessions) as session:
        await cases.claim(session, actor, walk[0])  # seen: its deadline is now the resolution's, later
        await cases.claim(session, actor, last)
        await cases.resolve(session, settings, actor, last, Outcome.solved, "")  # not seen yet: finished
    new = await open_case(sessions, customer, "care")  # opened now: the latest deadline
    second, following = await _page(client, following, h)
    assert second == [walk[3], walk[4], tied[0]]
    async with transaction(sessions) as session:  # breached: its priority rises above its twin's
        assert (await cases.record_breach(session, tied[1], "first_response")).escalated
    third, following = await _page(client, following, h)
    assert following is None
    assert third == [tied[1], last, new]

    # A new walk sees the queue as it is now.
    fresh, _ = await _page(client, f"/api/cases?{EVERY}&limit=500", h)
    assert fresh == [*early[1:], tied[1], tied[0], new, walk[0], last]


async def test_the_finished_cases_page_most_recently_resolved_first(client, sessions, settings):
    await make_team(sessions, "care")
    ann = await make_agent(sessions, "ann", "care")
    actor = cases.Actor(ann["id"], ["care"])
    customer = await make_customer(sessions, "pages-2")
    ids = [await open_case(sessions, customer, "care") for _ in range(5)]
    for case_id in ids:
        async with transaction(sessions) as session:
            await cases.claim(session, actor, case_id)
            await cases.resolve(session, settings, actor, case_id, Outcome.solved, "")
    seen, url = [], "/api/cases?status=resolved&status=closed&limit=2"
    while url is not None:
        page, url = await _page(client, url, ann["headers"])
        seen += page
        if len(seen) == 2:
            async with transaction(sessions) as session:  # closing changes nothing of the order
                await cases.close(session, actor, ids[0])
    assert seen == ids[::-1]


async def test_a_bad_cursor_is_a_422_naming_it(client, sessions):
    await make_team(sessions, "care")
    ann = await make_agent(sessions, "ann", "care")
    forged = base64.urlsafe_b64encode(b'["2026-01-01T00:00:00+00:00", null, null, 1, 5]').decode()
    for cursor in ["nonsense", forged, "x" * 401, base64.urlsafe_b64encode(b"[1,2]").decode(), "%00"]:
        response = await client.get("/api/cases", params={"cursor": cursor}, headers=ann["headers"])
        assert response.status_code == 422, (cursor, response.text)
        assert "cursor" in response.text, response.text


async def test_a_page_that_holds_the_rest_names_no_next_one(client, sessions):
    await make_team(sessions, "care")
    ann = await make_agent(sessions, "ann", "care")
    customer = await make_customer(sessions, "pages-3")
    ids = [await open_case(sessions, customer, "care") for _ in range(2)]
    response = await client.get("/api/cases?limit=2", headers=ann["headers"])
    assert [c["id"] for c in response.json()] == ids and "link" not in response.headers
