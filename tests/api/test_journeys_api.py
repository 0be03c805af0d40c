from sqlalchemy import func, select

from domain.journeys.models import Journey, JourneyVersion

TEMPLATE = {"id": "welcome", "name": "Welcome", "subject": "Hi", "html": "<p>Hi</p>"}


def journey(*nodes, id="onboarding"):
    return {"id": id, "name": "Onboarding", "definition": {"nodes": list(nodes)}}


ENTRY = {"id": "start", "type": "entry", "event": "Signed Up", "next": "hello"}
SEND = {"id": "hello", "type": "send_email", "template_id": "welcome", "next": "done"}
EXIT = {"id": "done", "type": "exit"}


async def _stored(sessions):
    async with sessions() as session:
        return (
            await session.scalar(select(func.count()).select_from(Journey)),
            await session.scalar(select(func.count()).select_from(JourneyVersion)),
        )


async def _post(client, headers, body):
    return await client.post("/api/journeys", json=body, headers=headers)


async def test_create_publish_pins_the_template_version(client, sessions, marketer_headers):
    await client.post("/api/templates", json=TEMPLATE, headers=marketer_headers)
    created = await _post(client, marketer_headers, journey(ENTRY, SEND, EXIT))
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "draft"
    published = await client.post("/api/journeys/onboarding/publish", headers=marketer_headers)
    assert published.status_code == 201
    nodes = {n["id"]: n for n in published.json()["definition"]["nodes"]}
    assert nodes["hello"]["template_version"] == 1
    # A later template edit does not change what version 1 of the journey sends.
    await client.put(
        "/api/templates/welcome", json={"subject": "New", "html": "<p/>"}, headers=marketer_headers
    )
    again = await client.get("/api/journeys/onboarding/versions/1", headers=marketer_headers)
    assert {n["id"]: n for n in again.json()["definition"]["nodes"]}["hello"]["template_version"] == 1


async def test_editing_the_draft_leaves_the_published_version_alone(client, marketer_headers):
    await client.post("/api/templates", json=TEMPLATE, headers=marketer_headers)
    await _post(client, marketer_headers, journey(ENTRY, SEND, EXIT))
    await client.post("/api/journeys/onboarding/publish", headers=marketer_headers)
    wait = {"id": "pause", "type": "wait", "duration": "1d", "next": "hello"}
    edited = await client.put(
        "/api/journeys/onboarding",
        json={"definition": {"nodes": [{**ENTRY, "next": "pause"}, wait, SEND, EXIT]}},
        headers=marketer_headers,
    )
    assert edited.status_code == 200
    v1 = (await client.get("/api/journeys/onboarding/versions/1", headers=marketer_headers)).json()
    assert [n["id"] for n in v1["definition"]["nodes"]] == ["start", "hello", "done"]
    v2 = (await client.post("/api/journeys/onboarding/publish", headers=marketer_headers)).json()
    assert v2["version"] == 2
    assert {n["id"]: n for n in v2["definition"]["nodes"]}["pause"]["seconds"] == 86_400


async def test_unknown_template_is_422_naming_the_node(client, sessions, marketer_headers):
    response = await _post(client, marketer_headers, journey(ENTRY, SEND, EXIT))
    assert response.status_code == 422
    assert response.json()["detail"] == [{"node": "hello", "problem": "template 'welcome' does not exist"}]
    assert await _stored(sessions) == (0, 0)


async def test_graph_problems_are_named(client, sessions, marketer_headers):
    await client.post("/api/templates", json=TEMPLATE, headers=marketer_headers)
    cases = [
        (journey({**ENTRY, "next": "done"}, SEND, EXIT), "hello", "cannot be reached"),
        (journey({**ENTRY, "next": "ghost"}, EXIT), "start", "unknown node 'ghost'"),
        (journey(SEND, EXIT), None, "exactly one entry"),
        (journey(ENTRY, {**SEND, "next": "hello"}), "hello", "loops without a wait"),
        (journey(ENTRY, SEND, EXIT, {**EXIT}), "done", "more than once"),
    ]
    for body, node, problem in cases:
        response = await _post(client, marketer_headers, body)
        assert response.status_code == 422, body
        details = response.json()["detail"]
        assert any(d.get("node") == node and problem in d["problem"] for d in details), details
    assert await _stored(sessions) == (0, 0)


async def test_shape_errors_name_the_node_and_path(client, marketer_headers):
    await client.post("/api/templates", json=TEMPLATE, headers=marketer_headers)
    bad_wait = {"id": "pause", "type": "wait", "duration": "soon", "next": "done"}
    response = await _post(client, marketer_headers, journey({**ENTRY, "next": "pause"}, bad_wait, EXIT))
    assert response.status_code == 422
    [detail] = response.json()["detail"]
    assert detail["node"] == "pause"
    assert "duration" in detail["path"]
    unknown_type = {"id": "x", "type": "teleport", "next": "done"}
    response = await _post(client, marketer_headers, journey({**ENTRY, "next": "x"}, unknown_type, EXIT))
    assert response.status_code == 422
    assert response.json()["detail"][0]["node"] == "x"


async def test_unknown_journey_is_404(client, marketer_headers):
    assert (await client.post("/api/journeys/nope/publish", headers=marketer_headers)).status_code == 404


async def test_enrollments_page_past_the_newest_with_before_id(client, sessions, marketer_headers):
    from domain.customers.models import Customer
    from domain.db import transaction
    from domain.journeys import service as journeys

    await client.post("/api/templates", json=TEMPLATE, headers=marketer_headers)
    await _post(client, marketer_headers, journey(ENTRY, SEND, EXIT))
    await client.post("/api/journeys/onboarding/publish", headers=marketer_headers)
    async with transaction(sessions) as session:
        people = [Customer(user_id=f"u{i}") for i in range(5)]
        session.add_all(people)
        await session.flush()
        rows = [
            {"workflow_id": f"journey/onboarding/customer/{c.id}", "journey_id": "onboarding", "version": 1}
            | {"customer_id": c.id, "event_id": None}
            for c in people
        ]
        await journeys.record_enrollments(session, rows)
    seen, before = [], None
    for _ in range(5):  # a journey with more enrollments than one page can hold is read to its end
        params = {"limit": 2} | ({"before_id": before} if before else {})
        page = await client.get(
            "/api/journeys/onboarding/enrollments", params=params, headers=marketer_headers
        )
        assert page.status_code == 200, page.text
        if not page.json():
            break
        seen += [e["customer_id"] for e in page.json()]
        before = page.json()[-1]["id"]
    assert seen == [c.id for c in reversed(people)]
