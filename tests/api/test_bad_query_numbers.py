"""Integers in query strings that no 64-bit column holds are invalid input (422 naming the parameter),
not a driver error: PostgreSQL refuses them as out of int64, SQLite's driver overflows."""

from __future__ import annotations

import pytest

from tests.cases.helpers import make_agent, make_team

HUGE = str(10**30)


async def _segment(client, headers) -> str:
    rule = {"trait": "plan", "op": "exists"}
    response = await client.post(
        "/api/segments", json={"id": "s", "name": "S", "rule": rule}, headers=headers
    )
    assert response.status_code == 201, response.text
    return "s"


@pytest.mark.parametrize("value", [HUGE, str(2**63), "-" + HUGE])
async def test_a_case_queue_assignee_beyond_64_bits_is_422(client, sessions, admin_headers, value):
    await make_team(sessions, "care")
    agent = await make_agent(sessions, "ann", "care")
    for headers in (admin_headers, agent["headers"]):
        got = await client.get("/api/cases", params={"assignee": value}, headers=headers)
        assert got.status_code == 422, got.text
        assert got.json()["error"] in ("invalid", "validation_error")
        detail = got.json()["detail"]
        field = detail["field"] if isinstance(detail, dict) else detail[0]["field"]
        assert field == "query.assignee"
    largest = str(2**63 - 1)
    got = await client.get("/api/cases", params={"assignee": largest}, headers=admin_headers)
    assert got.status_code == 200 and got.json() == []


async def test_a_case_queue_assignee_in_other_digits_is_422(client, admin_headers):
    for value in ("\u00b2", "\u0663", "\uff15", "1" * 5000):
        got = await client.get("/api/cases", params={"assignee": value}, headers=admin_headers)
        assert got.status_code == 422, got.text


@pytest.mark.parametrize("value", [HUGE, str(2**63)])
async def test_segment_members_after_beyond_64_bits_is_422(client, admin_headers, value):
    segment = await _segment(client, admin_headers)
    got = await client.get(f"/api/segments/{segment}/members", params={"after": value}, headers=admin_headers)
    assert got.status_code == 422, got.text
    assert got.json()["detail"][0]["field"] == "query.after"
    got = await client.get(f"/api/segments/{segment}/members", params={"after": -1}, headers=admin_headers)
    assert got.status_code == 422 and got.json()["detail"][0]["field"] == "query.after"
    got = await client.get(
        f"/api/segments/{segment}/members", params={"after": 2**63 - 1}, headers=admin_headers
    )
    assert got.status_code == 200, got.text


def test_every_integer_parameter_is_bounded_to_64_bits(app):
    """Each integer a path or query names is bounded to what a 64-bit column holds: a Query(ge=...) of its
    own over StoredInt replaced StoredInt's bounds (segment members' `after` had only ge=0)."""
    unbounded = []
    for template, operations in app.openapi()["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                schema = parameter.get("schema", {})
                for option in [schema, *schema.get("anyOf", [])]:
                    if option.get("type") != "integer":
                        continue
                    if option.get("maximum", 2**64) > 2**63 - 1 or option.get("minimum", -(2**64)) < -(2**63):
                        unbounded.append((method, template, parameter["name"], option))
    assert not unbounded, "\n".join(map(str, unbounded))
