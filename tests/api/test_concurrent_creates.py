"""Marketers double-clicking "create": several requests create the same thing at once. Exactly one is
stored (201); the others get a 409 that says so, never a 500, and store nothing."""

import asyncio

import pytest

TEMPLATE = {"id": "dup", "name": "Dup", "subject": "Hi", "html": "<p>Hi</p>"}
CREATES = {
    "/api/templates": TEMPLATE,
    "/api/segments": {"id": "dup", "name": "Dup", "rule": {"trait": "plan", "op": "exists"}},
    "/api/subscription-groups": {"id": "dup", "name": "Dup"},
    "/api/journeys": {
        "id": "dup",
        "name": "Dup",
        "definition": {
            "nodes": [
                {"id": "start", "type": "entry", "event": "Signed Up", "next": "done"},
                {"id": "done", "type": "exit"},
            ]
        },
    },
}


@pytest.mark.parametrize("path", sorted(CREATES))
async def test_simultaneous_creates_store_one_and_answer_409_to_the_rest(client, admin_headers, path):
    answers = await asyncio.gather(
        *(client.post(path, json=CREATES[path], headers=admin_headers) for _ in range(6))
    )
    codes = sorted(a.status_code for a in answers)
    assert codes == [201, 409, 409, 409, 409, 409], [a.text for a in answers]
    assert all(a.json()["error"] == "conflict" for a in answers if a.status_code == 409)
    listed = (await client.get(path, headers=admin_headers)).json()
    assert [item["id"] for item in listed] == ["dup"]
