"""Marketers double-clicking "create" or "save". Several requests creating the same thing at once: exactly
one is stored (201), the others get a 409 that says so, never a 500, and store nothing. Several saves of
one template or segment at once take turns: each becomes the next version."""

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


UPDATES = {
    "/api/templates/dup": {"subject": "Hi again", "html": "<p>Hi</p>"},
    "/api/segments/dup": {"rule": {"trait": "plan", "op": "equals", "value": "pro"}},
}


@pytest.mark.parametrize("path", sorted(UPDATES))
async def test_simultaneous_saves_of_one_thing_each_become_a_version(client, admin_headers, path):
    created = "/" + "/".join(path.split("/")[1:3])
    assert (await client.post(created, json=CREATES[created], headers=admin_headers)).status_code == 201
    answers = await asyncio.gather(
        *(client.put(path, json=UPDATES[path], headers=admin_headers) for _ in range(6))
    )
    assert [a.status_code for a in answers] == [200] * 6, [a.text for a in answers]
    versions = sorted(a.json().get("version") or a.json().get("current_version") for a in answers)
    assert versions == [2, 3, 4, 5, 6, 7], [a.json() for a in answers]
