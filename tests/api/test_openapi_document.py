"""The OpenAPI document (``/openapi.json``, shown by ``/docs``) tells an integrator what to send and
how to authenticate: the Segment call bodies of ``/v1``, which the routes read themselves, and the key
each route takes."""


def _refs(node, found):
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            found.add(node["$ref"])
        for value in node.values():
            _refs(value, found)
    elif isinstance(node, list):
        for value in node:
            _refs(value, found)
    return found


async def _document(client):
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    return response.json()


async def test_ingestion_bodies_are_documented_from_the_models_that_validate_them(client):
    doc = await _document(client)
    schemas = doc["components"]["schemas"]
    batch = doc["paths"]["/v1/batch"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert batch == {"$ref": "#/components/schemas/Batch"}
    calls = schemas["Batch"]["properties"]["batch"]["items"]
    assert set(calls["discriminator"]["mapping"]) == {"track", "identify", "page", "screen", "group", "alias"}
    track = doc["paths"]["/v1/track"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert track == {"$ref": "#/components/schemas/TrackCall"}
    assert "event" in schemas["TrackCall"]["required"]
    assert schemas["TrackCall"]["properties"]["event"]["maxLength"] == 255
    assert set(schemas["AliasCall"]["required"]) >= {"previousId", "userId"}
    assert "400" in doc["paths"]["/v1/identify"]["post"]["responses"]
    # Every reference resolves inside the document (a model's own "#/$defs/..." would not).
    missing = {ref for ref in _refs(doc, set()) if ref.removeprefix("#/components/schemas/") not in schemas}
    assert not missing


async def test_each_route_declares_the_key_it_takes(client):
    doc = await _document(client)
    schemes = doc["components"]["securitySchemes"]
    assert schemes["WriteKey"] == {**schemes["WriteKey"], "type": "http", "scheme": "basic"}
    assert schemes["ManagementKey"] == {**schemes["ManagementKey"], "type": "http", "scheme": "bearer"}
    security = {
        (method, path): [name for requirement in op.get("security", []) for name in requirement]
        for path, ops in doc["paths"].items()
        for method, op in ops.items()
    }
    assert all(names == ["WriteKey"] for (_, path), names in security.items() if path.startswith("/v1/"))
    assert security[("post", "/api/journeys")] == ["ManagementKey"]
    assert security[("get", "/api/analytics/report")] == ["ManagementKey"]
    assert security[("post", "/api/webhooks/unsubscribe-email")] == ["InboundKey"]
    assert security[("post", "/api/webhooks/unsubscribe-email/mime")] == ["InboundKey"]
    # What customers open from an email, and the health check, take no key.
    for public in [("get", "/u/{token}"), ("get", "/o/{token}"), ("get", "/api/health")]:
        assert security[public] == []
