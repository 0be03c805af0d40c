"""Inputs a fuzzer found answering 500: each now gets a definite answer (a 422 naming the field, or the
path the journey takes), in the simulation exactly as in the running workflow."""

from __future__ import annotations

import pytest

TEMPLATE = {"id": "hello", "name": "Hello", "subject": "Hi {{ traits.name }}", "html": "<p>Hi</p>"}
ENTRY = {"id": "start", "type": "entry", "event": "Signed Up", "next": "hold"}
SEND = {"id": "hello", "type": "send_email", "template_id": "hello", "next": "done"}
DONE = {"id": "done", "type": "exit"}


async def _journey(client, headers, *nodes: dict, rules: dict | None = None, journey_id: str = "j1"):
    definition = {"nodes": [ENTRY, *nodes, SEND, DONE]}
    if rules is not None:
        definition["rules"] = rules
    body = {"id": journey_id, "name": journey_id, "definition": definition}
    return await client.post("/api/journeys", json=body, headers=headers)


async def _simulate(client, headers, spec: dict, journey_id: str = "j1"):
    response = await client.post(f"/api/journeys/{journey_id}/simulate", json=spec, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def _path(result: dict) -> list[tuple[str, str | None]]:
    return [(s["node_id"], s["outcome"]) for s in result["steps"]]


@pytest.fixture
async def template(client, marketer_headers):
    assert (await client.post("/api/templates", json=TEMPLATE, headers=marketer_headers)).status_code == 201


# --- a simulation start without a UTC offset is UTC, as ingestion reads such a time ----------------------

NAIVE_CASES = [
    ("wait_until", [{"id": "hold", "type": "wait_until", "at": "12:00", "next": "hello"}], None),
    (
        "date_trait wait",
        [{"id": "hold", "type": "wait_until", "at": "12:00", "date_trait": "renewal", "next": "hello"}],
        None,
    ),
    (
        "quiet hours",
        [{"id": "hold", "type": "wait", "duration": "1m", "next": "hello"}],
        {"quiet_hours": {"start": "09:00", "end": "12:00"}},
    ),
]


@pytest.mark.parametrize(("nodes", "rules"), [c[1:] for c in NAIVE_CASES], ids=[c[0] for c in NAIVE_CASES])
async def test_a_start_without_offset_is_read_as_utc(client, marketer_headers, template, nodes, rules):
    assert (await _journey(client, marketer_headers, *nodes, rules=rules)).status_code == 201
    spec = {"customer": {"traits": {"name": "Ada", "renewal": "2026-06-01"}}}

    naive = await _simulate(client, marketer_headers, {**spec, "start": "2026-06-01T10:00:00"})
    utc = await _simulate(client, marketer_headers, {**spec, "start": "2026-06-01T10:00:00Z"})

    assert naive == utc
    [message] = naive["messages"]
    assert message["at"].startswith("2026-06-01T12:00:00")
    assert naive["steps"][0]["entered_at"].startswith("2026-06-01T10:00:00")


# --- a date trait whose day (+ offset) falls off the calendar is treated as no date ---------------------


@pytest.mark.parametrize(
    ("day", "offset", "zone"),
    [
        ("9999-12-31", 1, "UTC"),
        ("0001-01-01", -1, "UTC"),
        ("0001-01-01", 0, "Asia/Tokyo"),  # 00:30 in Tokyo is the day before in UTC
        ("9999-12-31", 0, "America/Los_Angeles"),  # 23:30 there is the next day in UTC
        ("9000-01-01", 0, "UTC"),  # on the calendar, but beyond the ten years a journey waits at most
    ],
)
async def test_a_date_beyond_the_calendar_is_no_date(client, marketer_headers, template, day, offset, zone):
    at = "23:30" if zone == "America/Los_Angeles" else "00:30"
    hold = {"id": "hold", "type": "wait_until", "at": at, "date_trait": "renewal", "offset_days": offset}
    rules = {"default_timezone": zone}
    assert (
        await _journey(client, marketer_headers, {**hold, "next": "hello"}, rules=rules)
    ).status_code == 201

    result = await _simulate(client, marketer_headers, {"customer": {"traits": {"renewal": day}}})

    assert result["status"] == "completed"
    assert _path(result) == [("hold", "no_date"), ("hello", "rendered"), ("done", None)]


# --- branch conditions never fail, whatever JSON the customer's traits hold -----------------------------


def _branch(*conditions: dict) -> dict:
    return {
        "id": "hold",
        "type": "branch",
        "branches": [{"when": list(conditions), "next": "done"}],
        "default_next": "hello",
    }


@pytest.mark.parametrize(
    ("condition", "traits", "taken"),
    [
        ({"trait": "name", "op": "contains", "value": 5}, {"name": "Ada"}, "default"),
        ({"trait": "name", "op": "contains", "value": True}, {"name": "Ada"}, "default"),
        ({"trait": "tags", "op": "contains", "value": 5}, {"tags": [4, 5]}, "branch:0"),
        ({"trait": "tags", "op": "contains", "value": "vip"}, {"tags": ["vip"]}, "branch:0"),
        ({"trait": "name", "op": "contains", "value": "d"}, {"name": "Ada"}, "branch:0"),
        ({"trait": "name", "op": "contains", "value": "x"}, {"name": {"x": 1}}, "default"),
        ({"trait": "name", "op": "gt", "value": 3}, {"name": "Ada"}, "default"),
        ({"trait": "name", "op": "lte", "value": "m"}, {"name": ["a"]}, "default"),
        ({"trait": "name", "op": "in", "value": ["Ada"]}, {"name": {"x": 1}}, "default"),
        ({"trait": "name", "op": "not_in", "value": [["a"]]}, {"name": ["a"]}, "default"),
    ],
)
async def test_branch_conditions_on_mixed_json_take_a_path(
    client, marketer_headers, template, condition, traits, taken
):
    assert (await _journey(client, marketer_headers, _branch(condition))).status_code == 201, condition

    result = await _simulate(client, marketer_headers, {"customer": {"traits": traits}})

    assert _path(result)[0] == ("hold", taken)


async def test_event_property_contains_a_number_in_a_string_takes_the_default(
    client, marketer_headers, template
):
    condition = {"event_property": "plan", "op": "contains", "value": 5}
    assert (await _journey(client, marketer_headers, _branch(condition))).status_code == 201
    spec = {"customer": {}, "entry": {"name": "Signed Up", "properties": {"plan": "pro"}}}

    result = await _simulate(client, marketer_headers, spec)

    assert _path(result)[0] == ("hold", "default")


@pytest.mark.parametrize("value", [None, {"a": 1}, ["a", "b"]], ids=["null", "object", "list"])
@pytest.mark.parametrize("subject", ["trait", "event_property"])
async def test_contains_with_a_value_that_is_not_a_scalar_is_refused_at_save(
    client, marketer_headers, template, value, subject
):
    condition = {subject: "name", "op": "contains"}
    if value is not None:
        condition["value"] = value

    response = await _journey(client, marketer_headers, _branch(condition))

    assert response.status_code == 422
    [detail] = response.json()["detail"]
    assert detail["node"] == "hold"
    assert detail["path"].startswith("nodes.1.branch.branches.0.when.0")
    assert "contains" in detail["problem"] and "value" in detail["problem"]


# --- a send names a subscription group that exists ------------------------------------------------------


async def test_an_unknown_subscription_group_is_refused_at_save_and_publish(
    client, marketer_headers, template
):
    send = {**SEND, "subscription_group": "newsletter"}
    body = {"id": "j1", "name": "J1", "definition": {"nodes": [{**ENTRY, "next": "hello"}, send, DONE]}}

    created = await client.post("/api/journeys", json=body, headers=marketer_headers)

    assert created.status_code == 422
    assert created.json()["detail"] == [
        {
            "node": "hello",
            "path": "nodes.1.subscription_group",
            "problem": "subscription group 'newsletter' does not exist",
        }
    ]
    group = {"id": "newsletter", "name": "Newsletter"}
    assert (
        await client.post("/api/subscription-groups", json=group, headers=marketer_headers)
    ).status_code == 201
    assert (await client.post("/api/journeys", json=body, headers=marketer_headers)).status_code == 201
    assert (await client.post("/api/journeys/j1/publish", headers=marketer_headers)).status_code == 201


async def test_a_draft_saved_with_an_unknown_group_before_the_check_is_refused_at_publish(
    client, marketer_headers, template, sessions
):
    from domain.db import transaction
    from domain.journeys.models import Journey

    send = {**SEND, "subscription_group": "newsletter"}
    draft = {"nodes": [{**ENTRY, "next": "hello"}, send, DONE], "rules": {}}
    async with transaction(sessions) as session:
        session.add(Journey(id="old", name="Old", status="draft", draft=draft))

    published = await client.post("/api/journeys/old/publish", headers=marketer_headers)

    assert published.status_code == 422
    [detail] = published.json()["detail"]
    assert (detail["node"], detail["path"]) == ("hello", "nodes.1.subscription_group")
    versions = await client.get("/api/journeys/old", headers=marketer_headers)
    assert versions.json()["published_version"] is None
