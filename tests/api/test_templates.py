from sqlalchemy import func, select

from domain.email.models import Template, TemplateVersion

WELCOME = {"id": "welcome", "name": "Welcome", "subject": "Hi {{ traits.first_name }}", "html": "<p>Hi</p>"}


async def _stored(sessions):
    async with sessions() as session:
        return (
            await session.scalar(select(func.count()).select_from(Template)),
            await session.scalar(select(func.count()).select_from(TemplateVersion)),
        )


async def test_create_get_and_new_version(client, sessions, marketer_headers):
    created = await client.post("/api/templates", json=WELCOME, headers=marketer_headers)
    assert created.status_code == 201
    assert created.json()["version"] == 1
    updated = await client.put(
        "/api/templates/welcome", json={"subject": "Hello", "html": "<p>v2</p>"}, headers=marketer_headers
    )
    assert updated.json()["version"] == 2
    fetched = (await client.get("/api/templates/welcome", headers=marketer_headers)).json()
    assert (fetched["version"], fetched["subject"]) == (2, "Hello")
    assert await _stored(sessions) == (1, 2)


async def test_jinja_syntax_error_is_422_with_the_line_and_nothing_is_stored(
    client, sessions, marketer_headers
):
    bad = {**WELCOME, "html": "<p>line one</p>\n<p>line two</p>\n<p>{{ traits.first_name }</p>\n"}
    response = await client.post("/api/templates", json=bad, headers=marketer_headers)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail["field"] == "html"
    assert detail["line"] == 3
    assert "syntax error" in detail["problem"]
    assert await _stored(sessions) == (0, 0)


async def test_syntax_error_in_an_update_keeps_the_current_version(client, sessions, marketer_headers):
    await client.post("/api/templates", json=WELCOME, headers=marketer_headers)
    response = await client.put(
        "/api/templates/welcome", json={"subject": "{{ oops", "html": "<p/>"}, headers=marketer_headers
    )
    assert response.status_code == 422
    assert response.json()["detail"]["field"] == "subject"
    fetched = (await client.get("/api/templates/welcome", headers=marketer_headers)).json()
    assert fetched["version"] == 1
    assert await _stored(sessions) == (1, 1)


async def test_duplicate_id_is_409(client, marketer_headers):
    await client.post("/api/templates", json=WELCOME, headers=marketer_headers)
    response = await client.post("/api/templates", json=WELCOME, headers=marketer_headers)
    assert response.status_code == 409


async def test_missing_fields_are_named(client, marketer_headers):
    response = await client.post("/api/templates", json={"name": "x"}, headers=marketer_headers)
    assert response.status_code == 422
    fields = {d["field"] for d in response.json()["detail"]}
    assert {"subject", "html"} <= fields


async def test_malformed_json_on_the_management_api_is_400(client, marketer_headers):
    response = await client.post(
        "/api/templates", content=b"{nope", headers={**marketer_headers, "content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"] == "malformed_json"


async def test_unknown_template_is_404(client, marketer_headers):
    response = await client.get("/api/templates/nope", headers=marketer_headers)
    assert response.status_code == 404
