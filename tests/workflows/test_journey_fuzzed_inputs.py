"""Customer data no journey expected (a date trait off the calendar or millennia away, a branch value
of another JSON type) takes the enrollment down a path: it used to fail the workflow task (or its
context activity) over and over, or the workflow itself, and the enrollment never went on."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from tests.workflows.harness import engine
from workflows.journey import JourneyWorkflow

# An enrollment that finishes does so within seconds on the time-skipping server; a stuck one never does.
FINISHES_WITHIN = 60


def _graph(*nodes: dict, rules: dict | None = None) -> dict:
    return {
        "nodes": [
            {"id": "start", "type": "entry", "event": "Signed Up", "next": nodes[0]["id"]},
            *nodes,
            {"id": "hello", "type": "send_email", "template_id": "hello", "next": "done"},
            {"id": "done", "type": "exit"},
        ],
        "rules": rules or {},
    }


async def _finished_path(e, journey_id: str, customer_id: int) -> list[tuple[str, str | None]]:
    handle = e.handle(journey_id, customer_id)
    result = await asyncio.wait_for(e.result(handle), FINISHES_WITHIN)
    assert result.status == "completed"
    return [(s.node_id, s.outcome) for s in await handle.query(JourneyWorkflow.path)]


async def test_a_date_trait_beyond_the_calendar_goes_on_as_no_date(env, sessions, settings):
    async with engine(env, sessions, settings) as e:
        await e.template("hello", "Hello {{ traits.name }}")
        renewal = {"id": "renewal", "type": "wait_until", "at": "10:00", "date_trait": "renewal"}
        await e.journey("renew", _graph({**renewal, "offset_days": 1, "next": "hello"}))
        last_day = await e.customer("ada", renewal="9999-12-31")
        await e.track("ada", "Signed Up")

        path = await _finished_path(e, "renew", last_day)

        assert path == [("renewal", "no_date"), ("hello", "sent"), ("done", None)]
        assert [m["subject"] for m in e.mailbox()] == ["Hello Ada"]

        # On the calendar but millennia away (a typo'd year): beyond the ten years a journey waits at
        # most, so it counts as no date too, rather than a timer of centuries.
        far = await e.customer("bo", renewal="9000-01-01", name="Bo")
        await e.track("bo", "Signed Up")
        path = await _finished_path(e, "renew", far)
        assert path == [("renewal", "no_date"), ("hello", "sent"), ("done", None)]


async def test_a_date_trait_without_its_year_waits_for_its_next_occurrence(env, sessions, settings):
    """``05-17`` is a birthday kept without the year: the wait ends on the next 17 May, at the local
    time in the customer's zone (it was read as 17 May 2000, long passed, and went on at once)."""
    async with engine(env, sessions, settings) as e:
        await e.template("hello", "Hello {{ traits.name }}")
        until = {"id": "until", "type": "wait_until", "at": "09:00", "date_trait": "birthday"}
        await e.journey("birthday", _graph({**until, "offset_days": -1, "next": "hello"}))
        zone = ZoneInfo("Asia/Tokyo")
        soon = (datetime.now(UTC) + timedelta(days=3)).astimezone(zone).date()
        cid = await e.customer("ada", birthday=soon.strftime("%m-%d"), timezone="Asia/Tokyo")
        await e.track("ada", "Signed Up")

        handle = e.handle("birthday", cid)
        result = await asyncio.wait_for(e.result(handle), FINISHES_WITHIN)

        assert result.status == "completed"
        steps = await handle.query(JourneyWorkflow.path)
        assert [(s.node_id, s.outcome) for s in steps] == [("until", None), ("hello", "sent"), ("done", None)]
        greeted = datetime.fromisoformat(steps[1].entered_at).astimezone(zone)
        assert (greeted.date(), greeted.hour, greeted.minute) == (soon - timedelta(days=1), 9, 0)


async def test_a_date_trait_segments_would_not_read_as_a_date_goes_on_as_no_date(env, sessions, settings):
    """Journeys read a date as segments do (domain.dates): a real YYYY-MM-DD at the start, or exactly a
    real MM-DD. Python's ISO forms beyond that (20270517, a week date, a padded value) used to be read
    as dates and waited for; an impossible day (1990-05-99, 2099-02-29) was already none."""
    async with engine(env, sessions, settings) as e:
        await e.template("hello", "Hello {{ traits.name }}")
        until = {"id": "until", "type": "wait_until", "at": "09:00", "date_trait": "renewal"}
        await e.journey("renew", _graph({**until, "offset_days": 0, "next": "hello"}))
        year = datetime.now(UTC).year + 2
        values = [f"{year}0517", f"{year}-W20-5", f" {year}-05-17", "+5-17", f"{year}-05-99", "2099-02-29"]
        for n, renewal in enumerate(values):
            cid = await e.customer(f"c{n}", renewal=renewal)
            await e.track(f"c{n}", "Signed Up")
            path = await _finished_path(e, "renew", cid)
            assert path == [("until", "no_date"), ("hello", "sent"), ("done", None)], renewal


async def test_a_branch_on_a_value_of_another_type_takes_the_default(env, sessions, settings):
    async with engine(env, sessions, settings) as e:
        await e.template("hello", "Hello {{ traits.name }}")
        branch = {
            "id": "b",
            "type": "branch",
            "branches": [{"when": [{"trait": "name", "op": "contains", "value": 5}], "next": "done"}],
            "default_next": "hello",
        }
        await e.journey("route", _graph(branch))
        ada = await e.customer("ada")
        await e.track("ada", "Signed Up")

        path = await _finished_path(e, "route", ada)

        assert path == [("b", "default"), ("hello", "sent"), ("done", None)]


DATE_BRANCH = {
    "id": "b",
    "type": "branch",
    "branches": [{"when": [{"trait": "renewal", "op": "gt", "value": "2024-09-01"}], "next": "hello"}],
    "default_next": "done",
}


async def test_a_branch_on_a_date_compares_days_as_segments_do(env, sessions, settings):
    """``gt 2024-09-01`` holds for a day after it, not for 1 September at any hour, nor for 2024-9-1
    (no date) which sorted after it by character; segments' ``after`` says the same of each."""
    async with engine(env, sessions, settings) as e:
        await e.template("hello", "Hello {{ traits.name }}")
        await e.journey("route", _graph(DATE_BRANCH))
        renewals = {
            "ada": "2024-10-01",
            "bo": "2024-09-01T23:30:00-05:00",
            "cy": "2024-9-1",
            "dee": "2024-09-02T00:30:00+14:00",
        }
        ids = {user: await e.customer(user, renewal=renewal) for user, renewal in renewals.items()}
        for user in renewals:
            await e.track(user, "Signed Up")

        taken = {user: (await _finished_path(e, "route", cid))[0] for user, cid in ids.items()}

        assert taken == {
            "ada": ("b", "branch:0"),
            "bo": ("b", "default"),
            "cy": ("b", "default"),
            "dee": ("b", "branch:0"),
        }
        assert sorted(m["to"] for m in e.mailbox()) == ["ada@example.com", "dee@example.com"]
