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


def _conforms(value, schema, schemas, where="body"):
    """Assert the value is what the document's schema says (the parts of JSON Schema it uses here)."""
    if "$ref" in schema:
        schema = schemas[schema["$ref"].removeprefix("#/components/schemas/")]
    kind = {"string": str, "array": list, "object": dict, "integer": int}.get(schema.get("type"), object)
    assert isinstance(value, kind), f"{where}: {value!r} is no {schema.get('type')}"
    if schema.get("type") == "object":
        assert set(schema.get("required", [])) <= set(value), f"{where}: misses {schema['required']}"
        if schema.get("additionalProperties") is not True:
            assert set(value) <= set(schema.get("properties", {})), f"{where}: undocumented keys"
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                _conforms(value[key], sub, schemas, f"{where}.{key}")
    if schema.get("type") == "array" and "items" in schema:
        for index, item in enumerate(value):
            _conforms(item, schema["items"], schemas, f"{where}[{index}]")


async def test_the_documented_422_is_the_body_the_api_answers(client, admin_headers):
    doc = await _document(client)
    schemas = doc["components"]["schemas"]
    # Not FastAPI's {"detail": [{loc, msg, type}]}, which no route answers.
    assert not {"HTTPValidationError", "ValidationError"} & set(schemas)
    refusal = schemas["Refusal"]
    keys = {"error", "detail", "message", "problems"}
    assert set(refusal["required"]) == set(refusal["properties"]) == keys
    problem = refusal["properties"]["problems"]["items"]["$ref"].removeprefix("#/components/schemas/")
    assert set(schemas[problem]["required"]) == {"field", "problem"}
    # The request's shape (FastAPI's check) and a domain check (text no database stores) refused alike.
    for method, path, body in [
        ("post", "/api/subscription-groups", {"id": "news", "name": "News", "opt_in": "maybe"}),
        ("get", "/api/customers/{customer_id}", None),
    ]:
        documented = doc["paths"][path][method]["responses"]["422"]["content"]["application/json"]
        answer = await client.request(
            method, path.replace("{customer_id}", "x%00"), json=body, headers=admin_headers
        )
        assert answer.status_code == 422, answer.text
        assert set(answer.json()) == keys
        _conforms(answer.json(), documented["schema"], schemas)
