"""Former userIds (alias renames and merges): the customer 360 and a case's snapshot list them, and the
erasure audit finds the person by one of them, as by the userId the profile had when erased."""

from sqlalchemy import select

from domain.auth.schemas import Role
from domain.customers.models import Customer
from tests.cases.helpers import make_agent, make_team, open_case
from tests.conftest import make_key, rows_naming


async def _ada_renamed_and_merged(client, write_key) -> None:
    auth = (write_key, "")
    batch = [
        {"type": "track", "messageId": "m1", "userId": "ada@example.com", "event": "Signed Up"},
        {"type": "track", "messageId": "m2", "userId": "legacy-9", "event": "Viewed"},
    ]
    assert (await client.post("/v1/batch", json={"batch": batch}, auth=auth)).status_code == 200
    for previous in ("ada@example.com", "legacy-9"):  # a rename, then a merge into the renamed profile
        alias = {"userId": "acct-7", "previousId": previous}
        response = await client.post("/v1/alias", json=alias, auth=auth)
        assert response.status_code == 200, response.text


async def _ada(sessions) -> int:
    async with sessions() as session:
        (ada,) = (await session.scalars(select(Customer))).all()
        return ada.id


async def test_the_customer_360_and_a_case_list_the_former_user_ids(client, sessions, write_key):
    await _ada_renamed_and_merged(client, write_key)
    ada = await _ada(sessions)
    await make_team(sessions, "care")
    agent = await make_agent(sessions, "ann", "care")
    shown = await client.get(f"/api/customers/{ada}", headers=agent["headers"])
    assert shown.status_code == 200, shown.text
    profile = shown.json()["profile"]
    assert (profile["user_id"], profile["former_user_ids"]) == ("acct-7", ["ada@example.com", "legacy-9"])
    case_id = await open_case(sessions, ada, "care")
    case = (await client.get(f"/api/cases/{case_id}", headers=agent["headers"])).json()
    assert case["context"]["customer"]["former_user_ids"] == ["ada@example.com", "legacy-9"]


async def test_the_erasure_audit_finds_the_person_by_a_former_user_id(client, sessions, write_key):
    await _ada_renamed_and_merged(client, write_key)
    ada = await _ada(sessions)
    admin = {"Authorization": f"Bearer {await make_key(sessions, role=Role.admin)}"}
    erased = await client.delete(f"/api/customers/{ada}", params={"reason": "asked"}, headers=admin)
    assert erased.status_code == 200, erased.text
    record = erased.json()
    for user_id in ("acct-7", "ada@example.com", "legacy-9"):
        audit = await client.get("/api/customers/erasures", params={"user_id": user_id}, headers=admin)
        assert audit.status_code == 200, audit.text
        assert audit.json() == [record], user_id  # the former ones found nothing
    nobody = await client.get("/api/customers/erasures", params={"user_id": "acct-8"}, headers=admin)
    assert nobody.json() == []
    # The record keeps digests only: the former ids are nowhere in the clear.
    assert await rows_naming(sessions, "ada@example.com") == {}
    assert await rows_naming(sessions, "legacy-9") == {}
