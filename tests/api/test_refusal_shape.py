"""Every 422 has the same keys whichever check refused the input, the request's shape (FastAPI) or a
domain rule: ``error``, ``detail`` as it always was, ``problems`` (each with ``field`` and ``problem``)
and ``message``, the first problem in words."""

from __future__ import annotations

import pytest

ENTRY = {"id": "start", "type": "entry", "event": "Signed Up", "next": "nowhere"}
WAIT = {"id": "pause", "type": "wait", "days": 1, "next": "elsewhere"}
# (method, path, body, code, the detail's shape as it always was, the first problem's field)
REFUSALS = {
    "request shape": (
        "POST",
        "/api/subscription-groups",
        {"id": "news", "name": "News", "opt_in": "maybe"},
        "validation_error",
        list,
        "opt_in",
    ),
    "domain check": ("GET", "/api/customers?q=a%00b", None, "invalid", dict, "q"),
    "segment rule": (
        "POST",
        "/api/segments",
        {"name": "x", "rule": {"trait": "age", "op": "gt", "value": "old"}},
        "invalid_rule",
        dict,
        "rule.value",
    ),
    "journey definition": (
        "POST",
        "/api/journeys",
        {"id": "j", "name": "J", "definition": {"nodes": [ENTRY, WAIT]}},
        "invalid_definition",
        list,
        None,
    ),
}


@pytest.mark.parametrize("kind", REFUSALS)
async def test_every_422_carries_the_same_keys(kind, client, admin_headers):
    method, path, body, code, shape, field = REFUSALS[kind]
    answer = await client.request(method, path, json=body, headers=admin_headers)
    assert answer.status_code == 422, answer.text
    refusal = answer.json()
    assert set(refusal) == {"error", "detail", "message", "problems"}
    assert refusal["error"] == code
    assert isinstance(refusal["detail"], shape)  # unchanged, for clients reading it
    problems = refusal["problems"]
    assert problems and all(isinstance(p["field"], str) and isinstance(p["problem"], str) for p in problems)
    details = refusal["detail"] if shape is list else [refusal["detail"]]
    assert [p["problem"] for p in problems] == [d["problem"] for d in details]
    assert [p["field"] for p in problems] == [d.get("field", d.get("path")) for d in details]
    if field is not None:
        assert problems[0]["field"] == field
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    assert refusal["message"] == f"{problems[0]['field']}: {problems[0]['problem']}{more}"


async def test_a_journey_problem_keeps_the_node_it_names(client, admin_headers):
    body = {"id": "j", "name": "J", "definition": {"nodes": [ENTRY, WAIT]}}
    refusal = (await client.post("/api/journeys", json=body, headers=admin_headers)).json()
    named = [d for d in refusal["detail"] if "node" in d]
    assert named, refusal
    assert [p["node"] for p in refusal["problems"] if "node" in p] == [d["node"] for d in named]


async def test_other_errors_keep_their_two_keys(client, admin_headers):
    missing = await client.get("/api/segments/nope", headers=admin_headers)
    assert missing.status_code == 404 and set(missing.json()) == {"error", "detail"}
