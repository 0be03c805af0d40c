from sqlalchemy import select

from domain.auth.models import ApiKey
from domain.auth.schemas import Role
from tests.conftest import make_key

TEMPLATE = {"name": "Hi", "subject": "Hi", "html": "<p>Hi</p>"}


async def test_secrets_are_stored_only_as_hashes(sessions):
    secret = await make_key(sessions, role=Role.admin)
    async with sessions() as session:
        stored = (await session.scalars(select(ApiKey))).all()
    assert len(stored) == 1
    assert secret not in (stored[0].key_hash, stored[0].prefix)
    assert len(stored[0].key_hash) == 64


async def test_no_key_is_401(client):
    response = await client.get("/api/templates")
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"


async def test_unknown_key_is_401(client):
    response = await client.get("/api/templates", headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401


async def test_write_key_cannot_use_management_api(client, write_key):
    for headers in ({"Authorization": f"Bearer {write_key}"}, {}):
        auth = (write_key, "") if not headers else None
        response = await client.get("/api/templates", headers=headers, auth=auth)
        assert response.status_code == 403, response.text
        assert "write key" in response.json()["detail"]


async def test_agent_cannot_write_templates_but_marketer_can(client, sessions):
    agent = {"Authorization": f"Bearer {await make_key(sessions, role=Role.agent)}"}
    marketer = {"Authorization": f"Bearer {await make_key(sessions, role=Role.marketer)}"}
    denied = await client.post("/api/templates", json=TEMPLATE, headers=agent)
    assert denied.status_code == 403
    allowed = await client.post("/api/templates", json=TEMPLATE, headers=marketer)
    assert allowed.status_code == 201


async def test_only_admin_manages_keys_and_a_revoked_key_stops_working(
    client, admin_headers, marketer_headers
):
    assert (await client.get("/api/keys", headers=marketer_headers)).status_code == 403
    created = await client.post("/api/keys", json={"name": "crm", "role": "marketer"}, headers=admin_headers)
    assert created.status_code == 201
    key = created.json()
    headers = {"Authorization": f"Bearer {key['secret']}"}
    assert (await client.get("/api/templates", headers=headers)).status_code == 200
    listed = (await client.get("/api/keys", headers=admin_headers)).json()
    assert all("secret" not in k for k in listed)
    assert (await client.delete(f"/api/keys/{key['id']}", headers=admin_headers)).status_code == 200
    assert (await client.get("/api/templates", headers=headers)).status_code == 401


async def test_management_key_needs_a_role(client, admin_headers):
    response = await client.post("/api/keys", json={"name": "x"}, headers=admin_headers)
    assert response.status_code == 422
    assert response.json()["detail"]["field"] == "role"


async def test_management_key_cannot_ingest(client, admin_headers):
    response = await client.post("/v1/track", json={"userId": "u", "event": "E"}, headers=admin_headers)
    assert response.status_code == 403


async def test_a_revoked_write_key_stops_working_at_once(client, admin_headers):
    created = await client.post("/api/keys", json={"name": "shop", "kind": "write"}, headers=admin_headers)
    key = created.json()
    call = {"userId": "u1", "event": "Viewed"}
    assert (await client.post("/v1/track", json=call, auth=(key["secret"], ""))).status_code == 200
    assert (await client.delete(f"/api/keys/{key['id']}", headers=admin_headers)).status_code == 200
    refused = await client.post("/v1/track", json=call, auth=(key["secret"], ""))
    assert refused.status_code == 401, refused.text
    assert (await client.post("/v1/track", json={**call, "writeKey": key["secret"]})).status_code == 401
