"""Journey definitions are validated before anything is stored: a 422 names the node and the problem."""

from __future__ import annotations

import pytest

TEMPLATE = {"id": "hello", "name": "Hello", "subject": "Hi {{ traits.name }}", "html": "<p>Hi</p>"}


async def add_team_and_segment(sessions, *, team: str, segment: str | None = None) -> None:
    """What an escalate node and a segment branch refer to must exist before the journey is saved."""
    from domain.cases import service as cases
    from domain.cases.schemas import TeamIn
    from domain.db import transaction
    from domain.segments import service as segments
    from domain.segments.schemas import SegmentIn

    async with transaction(sessions) as session:
        await cases.create_team(session, TeamIn(id=team, name=team.title()))
        if segment:
            rule = {"trait": segment, "op": "exists"}
            await segments.create(session, SegmentIn(id=segment, name=segment, rule=rule))


def _journey(*nodes: dict, rules: dict | None = None) -> dict:
    definition = {"nodes": list(nodes)}
    if rules is not None:
        definition["rules"] = rules
    return {"id": "j1", "name": "J1", "definition": definition}


ENTRY = {"id": "start", "type": "entry", "event": "Signed Up", "next": "hello"}
SEND = {"id": "hello", "type": "send_email", "template_id": "hello", "next": "done"}
DONE = {"id": "done", "type": "exit"}

CASES = [
    (
        "unknown next",
        _journey(ENTRY, {**SEND, "next": "nowhere"}, DONE),
        "hello",
        "next names an unknown node 'nowhere'",
    ),
    (
        "unreachable node",
        _journey(ENTRY, SEND, DONE, {"id": "orphan", "type": "exit"}),
        "orphan",
        "cannot be reached",
    ),
    (
        "loop without a wait",
        _journey(
            ENTRY,
            {**SEND, "next": "again"},
            {"id": "again", "type": "send_email", "template_id": "hello", "next": "hello"},
        ),
        "hello",
        "loops without a wait",
    ),
    (
        "two entries",
        _journey(ENTRY, {**ENTRY, "id": "start2"}, SEND, DONE),
        None,
        "exactly one entry node, found 2",
    ),
    (
        "bad duration",
        _journey(
            ENTRY,
            {**SEND, "next": "w"},
            {"id": "w", "type": "wait", "duration": "soon", "next": "done"},
            DONE,
        ),
        "w",
        "not a duration",
    ),
    (
        "wait longer than any timer",
        _journey(
            ENTRY,
            {**SEND, "next": "w"},
            {"id": "w", "type": "wait", "duration": "99999999999w", "next": "done"},
            DONE,
        ),
        "w",
        "at most 3650 days",
    ),
    (
        "missing template",
        _journey(ENTRY, {**SEND, "template_id": "nope"}, DONE),
        "hello",
        "template 'nope' does not exist",
    ),
    (
        "timeout branch to an unknown node",
        _journey(
            {**ENTRY, "next": "w"},
            {
                "id": "w",
                "type": "wait_for_event",
                "event": "Order Completed",
                "timeout": "1h",
                "next": "hello",
                "timeout_next": "gone",
            },
            SEND,
            DONE,
        ),
        "w",
        "timeout_next names an unknown node 'gone'",
    ),
    (
        "deduction not covered going to an unknown node",
        _journey(
            {**ENTRY, "next": "pay"},
            {"id": "pay", "type": "deduct_points", "points": 5, "next": "hello", "insufficient_next": "gone"},
            SEND,
            DONE,
        ),
        "pay",
        "insufficient_next names an unknown node 'gone'",
    ),
    (
        "condition testing nothing",
        _journey(
            {**ENTRY, "next": "b"},
            {
                "id": "b",
                "type": "branch",
                "branches": [{"when": [{"op": "eq", "value": 1}], "next": "hello"}],
            },
            SEND,
            DONE,
        ),
        "b",
        "exactly one of trait, event_property or segment",
    ),
    (
        "per-key re-entry without a key",
        _journey({**ENTRY, "reentry": "once_per_key"}, SEND, DONE),
        "start",
        "needs entry_key",
    ),
    (
        "date entry without a time",
        _journey(
            {"id": "start", "type": "entry", "trigger": "date_trait", "trait": "birthday", "next": "hello"},
            SEND,
            DONE,
        ),
        "start",
        "needs at",
    ),
    (
        "webhook to a non-http url",
        _journey(
            {**ENTRY, "next": "hook"},
            {"id": "hook", "type": "webhook", "url": "ftp://example.com/x", "next": "hello"},
            SEND,
            DONE,
        ),
        "hook",
        "http:// or https://",
    ),
    (
        "webhook to a port that cannot be",  # it was saved, and refused only when the step ran
        _journey(
            {**ENTRY, "next": "hook"},
            {"id": "hook", "type": "webhook", "url": "http://example.com:99999/x", "next": "hello"},
            SEND,
            DONE,
        ),
        "hook",
        "url has an invalid port",
    ),
    (
        "webhook without a host",
        _journey(
            {**ENTRY, "next": "hook"},
            {"id": "hook", "type": "webhook", "url": "https:///hook", "next": "hello"},
            SEND,
            DONE,
        ),
        "hook",
        "url has no host",
    ),
    (
        "quiet hours with a bad time",
        _journey(ENTRY, SEND, DONE, rules={"quiet_hours": {"start": "25:00", "end": "08:00"}}),
        None,
        "String should match pattern",
    ),
    (
        "unknown timezone",
        _journey(ENTRY, SEND, DONE, rules={"default_timezone": "Mars/Olympus"}),
        None,
        "not an IANA timezone",
    ),
    (
        "split with no paths",
        _journey({**ENTRY, "next": "s"}, {"id": "s", "type": "split", "paths": []}, SEND, DONE),
        "s",
        "at least 1 item",
    ),
    (
        "goal on a list value analytics cannot count",
        _journey(ENTRY, SEND, DONE, rules={"goal": {"event": "Order Completed", "where": {"items": ["a"]}}}),
        None,
        "where.items: a goal compares plain values",
    ),
]


@pytest.mark.parametrize(("case", "body", "node", "problem"), CASES, ids=[c[0] for c in CASES])
async def test_invalid_definition_is_refused_naming_node_and_problem(
    client, marketer_headers, case, body, node, problem
):
    await client.post("/api/templates", json=TEMPLATE, headers=marketer_headers)

    response = await client.post("/api/journeys", json=body, headers=marketer_headers)

    assert response.status_code == 422, response.text
    payload = response.json()
    assert payload["error"] == "invalid_definition"
    assert any(
        problem in item["problem"] and (node is None or item.get("node") == node)
        for item in payload["detail"]
    ), payload["detail"]
    listed = await client.get("/api/journeys", headers=marketer_headers)
    assert listed.json() == []


async def test_invalid_edit_keeps_the_stored_draft(client, marketer_headers):
    await client.post("/api/templates", json=TEMPLATE, headers=marketer_headers)
    created = await client.post("/api/journeys", json=_journey(ENTRY, SEND, DONE), headers=marketer_headers)
    assert created.status_code == 201, created.text

    bad = {"definition": {"nodes": [ENTRY, {**SEND, "next": "nowhere"}, DONE]}}
    response = await client.put("/api/journeys/j1", json=bad, headers=marketer_headers)

    assert response.status_code == 422
    assert (await client.get("/api/journeys/j1", headers=marketer_headers)).json()["definition"]["nodes"][1][
        "next"
    ] == "done"


async def test_every_node_type_is_accepted_and_published(client, marketer_headers, sessions):
    await client.post("/api/templates", json=TEMPLATE, headers=marketer_headers)
    await add_team_and_segment(sessions, team="care", segment="vip")
    group = {"id": "marketing", "name": "Marketing"}
    assert (
        await client.post("/api/subscription-groups", json=group, headers=marketer_headers)
    ).status_code == 201
    body = _journey(
        {
            "id": "start",
            "type": "entry",
            "event": "Cart Updated",
            "reentry": "once_per_key",
            "entry_key": "cart_id",
            "next": "w",
        },
        {
            "id": "w",
            "type": "wait_for_event",
            "event": "Order Completed",
            "match_entry": ["cart_id"],
            "timeout": "1h",
            "next": "done",
            "timeout_next": "hello",
        },
        {**SEND, "subscription_group": "marketing", "next": "until"},
        {"id": "until", "type": "wait_until", "at": "09:00", "weekdays": ["mon", "tue"], "next": "b"},
        {
            "id": "b",
            "type": "branch",
            "branches": [
                {"when": [{"segment": "vip"}], "next": "award"},
                {"when": [{"trait": "value_tier", "op": "in", "value": ["key", "major"]}], "next": "esc"},
                {"when": [{"event_property": "total", "op": "gte", "value": 100}], "next": "split"},
            ],
            "default_next": "trait",
        },
        {"id": "award", "type": "award_points", "points": 50, "next": "deduct"},
        {"id": "deduct", "type": "deduct_points", "points": 10, "next": "done"},
        {
            "id": "esc",
            "type": "escalate",
            "subject": "Call them",
            "team": "care",
            "sla": "4h",
            "resolved_next": "done",
            "breached_next": "done",
        },
        {
            "id": "split",
            "type": "split",
            "paths": [{"weight": 1, "next": "hook"}, {"weight": 3, "next": "done"}],
            "holdout_percent": 10,
        },
        {"id": "hook", "type": "webhook", "url": "https://example.com/hook", "next": "done"},
        {"id": "trait", "type": "update_trait", "traits": {"nurtured": True}, "next": "w2"},
        {"id": "w2", "type": "wait", "duration": "2d", "next": "done"},
        DONE,
        rules={
            "goal": {"event": "Order Completed"},
            "exit_when": [{"event": "Unsubscribed"}],
            "frequency_cap": {"max": 3, "window": "1w"},
            "quiet_hours": {"start": "21:00", "end": "08:00"},
            "send_rate": {"max": 100, "per": "minute"},
            "default_timezone": "Europe/Paris",
        },
    )
    created = await client.post("/api/journeys", json=body, headers=marketer_headers)
    assert created.status_code == 201, created.text

    published = await client.post("/api/journeys/j1/publish", headers=marketer_headers)

    assert published.status_code == 201, published.text
    nodes = {n["id"]: n for n in published.json()["definition"]["nodes"]}
    assert nodes["hello"]["template_version"] == 1
    assert nodes["w"]["timeout_seconds"] == 3600
    assert nodes["esc"]["sla_seconds"] == 4 * 3600
    assert published.json()["definition"]["rules"]["frequency_cap"]["window_seconds"] == 7 * 86400
    assert published.json()["definition"]["rules"]["send_rate"]["per_seconds"] == 60


async def test_lifecycle_draft_published_paused_resumed_archived(client, marketer_headers):
    await client.post("/api/templates", json=TEMPLATE, headers=marketer_headers)
    await client.post("/api/journeys", json=_journey(ENTRY, SEND, DONE), headers=marketer_headers)

    async def act(action: str) -> tuple[int, str | None]:
        response = await client.post(f"/api/journeys/j1/{action}", headers=marketer_headers)
        return response.status_code, response.json().get("status")

    assert (await act("pause"))[0] == 409  # a draft has nothing running to pause
    assert (await act("publish"))[0] == 201
    assert await act("pause") == (200, "paused")
    assert (await act("pause"))[0] == 409
    assert (await act("publish"))[0] == 201  # a new version while paused stays paused
    assert (await client.get("/api/journeys/j1", headers=marketer_headers)).json()["status"] == "paused"
    assert await act("resume") == (200, "published")
    assert await act("archive") == (200, "archived")
    assert (await act("resume"))[0] == 409
    assert (await act("publish"))[0] == 409
    edit = await client.put(
        "/api/journeys/j1",
        json={"definition": _journey(ENTRY, SEND, DONE)["definition"]},
        headers=marketer_headers,
    )
    assert edit.status_code == 409


async def test_escalation_to_an_unknown_team_or_segment_is_refused(client, marketer_headers):
    await client.post("/api/templates", json=TEMPLATE, headers=marketer_headers)
    body = _journey(
        {**ENTRY, "next": "b"},
        {
            "id": "b",
            "type": "branch",
            "branches": [{"when": [{"segment": "ghosts"}], "next": "esc"}],
            "default_next": "done",
        },
        {"id": "esc", "type": "escalate", "subject": "Call", "team": "nobody", "resolved_next": "done"},
        DONE,
    )
    response = await client.post("/api/journeys", json=body, headers=marketer_headers)
    assert response.status_code == 422
    problems = {(d.get("node"), d["problem"]) for d in response.json()["detail"]}
    assert ("esc", "team 'nobody' does not exist") in problems
    assert ("b", "segment 'ghosts' does not exist") in problems
    assert (await client.get("/api/journeys", headers=marketer_headers)).json() == []


@pytest.mark.parametrize(
    ("send_rate", "path", "problem"),
    [
        ({"max": 0, "per": "minute"}, "rules.send_rate.max", "greater than 0"),
        ({"max": 10, "per": "fortnight"}, "rules.send_rate.per", "'second', 'minute', 'hour' or 'day'"),
        ({"max": 10}, "rules.send_rate.per", "Field required"),
        ({"max": 10, "per": "minute", "burst": 5}, "rules.send_rate.burst", "Extra inputs"),
    ],
)
async def test_an_invalid_send_rate_is_refused_naming_the_field(
    client, marketer_headers, send_rate, path, problem
):
    await client.post("/api/templates", json=TEMPLATE, headers=marketer_headers)
    body = _journey(ENTRY, SEND, DONE, rules={"send_rate": send_rate})

    response = await client.post("/api/journeys", json=body, headers=marketer_headers)

    assert response.status_code == 422, response.text
    assert any(d.get("path") == path and problem in d["problem"] for d in response.json()["detail"]), (
        response.json()
    )


async def test_a_segment_goal_and_a_segment_entry_are_accepted_when_the_segment_exists(
    client, marketer_headers, sessions
):
    await client.post("/api/templates", json=TEMPLATE, headers=marketer_headers)
    entry = {"id": "start", "type": "entry", "trigger": "segment", "segment_id": "vip", "next": "hello"}
    body = _journey(entry, SEND, DONE, rules={"goal": {"segment": "buyers"}})

    refused = await client.post("/api/journeys", json=body, headers=marketer_headers)
    assert refused.status_code == 422
    problems = {(d.get("node"), d.get("path"), d["problem"]) for d in refused.json()["detail"]}
    assert problems == {
        ("start", "nodes.0.segment_id", "segment 'vip' does not exist"),
        (None, "rules.goal.segment", "segment 'buyers' does not exist"),
    }

    await add_team_and_segment(sessions, team="care", segment="vip")
    await add_team_and_segment(sessions, team="sales", segment="buyers")
    created = await client.post("/api/journeys", json=body, headers=marketer_headers)
    assert created.status_code == 201, created.text
    assert (await client.post("/api/journeys/j1/publish", headers=marketer_headers)).status_code == 201
    # Both are in use now: deleting either would strand the customers inside.
    for segment_id in ("vip", "buyers"):
        refused = await client.delete(f"/api/segments/{segment_id}", headers=marketer_headers)
        assert refused.status_code == 409, refused.text
        assert refused.json()["detail"]["journeys"] == ["j1"]


async def test_keys_named_segment_that_are_data_are_no_segment_references(client, marketer_headers):
    """B2B profiles carry a "segment" trait, events a "segment" property: setting, sending or filtering
    on one names no segment of ours, so no segment need exist."""
    await client.post("/api/templates", json=TEMPLATE, headers=marketer_headers)
    body = _journey(
        {**ENTRY, "where": {"segment": "b2b"}, "next": "tag"},
        {"id": "tag", "type": "update_trait", "traits": {"segment": "enterprise"}, "next": "hook"},
        {
            "id": "hook",
            "type": "webhook",
            "url": "https://crm.example.com/hook",
            "body": {"segment": "trial-users", "segment_id": "t1"},
            "next": "w",
        },
        {
            "id": "w",
            "type": "wait_for_event",
            "event": "Demo Booked",
            "where": {"segment": "b2b", "segment_id": "s1"},
            "timeout": "3d",
            "next": "done",
            "timeout_next": "hello",
        },
        SEND,
        DONE,
        rules={
            "goal": {"event": "Order Completed", "where": {"segment": "smb"}},
            "exit_when": [{"event": "Plan Changed", "where": {"segment": "free", "segment_id": "f"}}],
        },
    )

    created = await client.post("/api/journeys", json=body, headers=marketer_headers)

    assert created.status_code == 201, created.text
    assert (await client.post("/api/journeys/j1/publish", headers=marketer_headers)).status_code == 201


SEGMENT_EXITED = {"event": "Segment Exited", "where": {"segment_id": "actives"}}
SEGMENT_ENTERED = {"event": "Segment Entered", "where": {"segment_id": "actives"}}
REFERENCES = [
    (
        "branch condition",
        _journey(
            {**ENTRY, "next": "b"},
            {
                "id": "b",
                "type": "branch",
                "branches": [
                    {"when": [{"trait": "plan", "op": "exists"}, {"segment": "actives"}], "next": "hello"}
                ],
                "default_next": "done",
            },
            SEND,
            DONE,
        ),
        "b",
        "nodes.1.branches.0.when.1.segment",
    ),
    (
        "segment entry",
        _journey(
            {"id": "start", "type": "entry", "trigger": "segment", "segment_id": "actives", "next": "hello"},
            SEND,
            DONE,
        ),
        "start",
        "nodes.0.segment_id",
    ),
    (
        "entry on entering the segment",
        _journey({**ENTRY, **SEGMENT_ENTERED}, SEND, DONE),
        "start",
        "nodes.0.where.segment_id",
    ),
    (
        "wait for leaving the segment",
        _journey(
            {**ENTRY, "next": "w"},
            {"id": "w", "type": "wait_for_event", **SEGMENT_EXITED, "timeout": "1d", "next": "hello"},
            SEND,
            DONE,
        ),
        "w",
        "nodes.1.where.segment_id",
    ),
    (
        "segment goal",
        _journey(ENTRY, SEND, DONE, rules={"goal": {"segment": "actives"}}),
        None,
        "rules.goal.segment",
    ),
    (
        "goal on entering the segment",
        _journey(ENTRY, SEND, DONE, rules={"goal": SEGMENT_ENTERED}),
        None,
        "rules.goal.where.segment_id",
    ),
    (
        "exit on leaving the segment",
        _journey(ENTRY, SEND, DONE, rules={"exit_when": [{"event": "Unsubscribed"}, SEGMENT_EXITED]}),
        None,
        "rules.exit_when.1.where.segment_id",
    ),
]


@pytest.mark.parametrize(("case", "body", "node", "path"), REFERENCES, ids=[c[0] for c in REFERENCES])
async def test_a_segment_reference_must_exist_and_keeps_the_segment_in_use(
    client, marketer_headers, sessions, case, body, node, path
):
    """Each place the language names a segment: an unknown one is a 422 at its own path, a known one
    cannot be deleted while the published journey refers to it."""
    await client.post("/api/templates", json=TEMPLATE, headers=marketer_headers)

    refused = await client.post("/api/journeys", json=body, headers=marketer_headers)

    assert refused.status_code == 422, refused.text
    [detail] = refused.json()["detail"]
    assert (detail.get("node"), detail["path"], detail["problem"]) == (
        node,
        path,
        "segment 'actives' does not exist",
    )
    await add_team_and_segment(sessions, team="care", segment="actives")
    assert (await client.post("/api/journeys", json=body, headers=marketer_headers)).status_code == 201
    assert (await client.post("/api/journeys/j1/publish", headers=marketer_headers)).status_code == 201
    in_use = await client.delete("/api/segments/actives", headers=marketer_headers)
    assert in_use.status_code == 409, in_use.text
    assert in_use.json()["detail"]["journeys"] == ["j1"]


@pytest.mark.parametrize("value", ["true", "yes", 2, 1, [True], {"member": True}])
async def test_a_segment_condition_whose_value_is_not_a_boolean_is_refused(
    client, marketer_headers, sessions, value
):
    """Membership is true or false: "true" or 1 would never equal it and send members down the
    default path (with 'ne', everyone down the branch)."""
    await client.post("/api/templates", json=TEMPLATE, headers=marketer_headers)
    await add_team_and_segment(sessions, team="care", segment="vip")
    branch = {
        "id": "b",
        "type": "branch",
        "branches": [{"when": [{"segment": "vip", "op": "ne", "value": value}], "next": "hello"}],
        "default_next": "done",
    }

    response = await client.post(
        "/api/journeys", json=_journey({**ENTRY, "next": "b"}, branch, SEND, DONE), headers=marketer_headers
    )

    assert response.status_code == 422, response.text
    [detail] = response.json()["detail"]
    assert detail["node"] == "b" and detail["path"].startswith("nodes.1.branch.branches.0.when.0"), detail
    assert "value must be true or false" in detail["problem"]
    assert (await client.get("/api/journeys", headers=marketer_headers)).json() == []


@pytest.mark.parametrize("value", [True, False, None])
async def test_a_segment_condition_takes_true_false_or_no_value(client, marketer_headers, sessions, value):
    await client.post("/api/templates", json=TEMPLATE, headers=marketer_headers)
    await add_team_and_segment(sessions, team="care", segment="vip")
    condition = {"segment": "vip"} if value is None else {"segment": "vip", "value": value}
    branch = {
        "id": "b",
        "type": "branch",
        "branches": [{"when": [condition], "next": "hello"}],
        "default_next": "done",
    }

    response = await client.post(
        "/api/journeys", json=_journey({**ENTRY, "next": "b"}, branch, SEND, DONE), headers=marketer_headers
    )

    assert response.status_code == 201, response.text
    stored = response.json()["definition"]["nodes"][1]["branches"][0]["when"][0]
    assert stored["value"] is (True if value is None else value)
