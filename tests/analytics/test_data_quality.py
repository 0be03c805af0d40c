"""The data-quality score and its findings equal the independent computation from the generated rows."""

from __future__ import annotations

import csv
import io

import pytest
from sqlalchemy import insert

from domain.customers.models import Customer
from domain.db import transaction, utcnow
from tests.analytics import dataset, expected

pytestmark = pytest.mark.timeout(600)


@pytest.fixture
async def world(sessions):
    built = dataset.build(seed=5, now=utcnow())  # timeliness is measured from now
    await dataset.store(sessions, built)
    return built


async def test_score_dimensions_and_findings(client, marketer_headers, world):
    answer = expected.data_quality(world)
    got = await client.get("/api/analytics/data-quality", params={"limit": 10_000}, headers=marketer_headers)
    assert got.status_code == 200, got.text
    q = got.json()
    assert q["customers"] == answer["customers"]
    for dimension in ("accuracy", "completeness", "consistency", "timeliness"):
        assert q[dimension]["score"] == pytest.approx(answer[dimension]), dimension
        assert 0 < answer[dimension] < 1, f"{dimension} is not exercised by the data set"
    assert q["score"] == pytest.approx(answer["score"])
    weights = {d: q[d]["weight"] for d in ("accuracy", "completeness", "consistency", "timeliness")}
    assert weights == {"accuracy": 0.4, "completeness": 0.3, "consistency": 0.2, "timeliness": 0.1}

    found = {(f["dimension"], f["customer_id"], f["field"]) for f in q["findings"]}
    assert {(i, f) for d, i, f in found if d == "accuracy"} == answer["inaccurate"]
    assert {(i, f) for d, i, f in found if d == "completeness"} == answer["missing"]
    assert {(i, f) for d, i, f in found if d == "consistency"} == answer["conflicts"]
    assert {i for d, i, _ in found if d == "timeliness"} == answer["stale"]
    assert q["completeness"]["findings"] == len(answer["missing"])
    # Each kind of problem is present, with a message a person can act on.
    problems = {(f["dimension"], f["field"], f["problem"]) for f in q["findings"]}
    assert ("accuracy", "timezone", "not an IANA time zone") in problems
    assert any(d == "consistency" and p.startswith("shared with") for d, _, p in problems)
    assert any(d == "consistency" and p.endswith("sources disagree") for d, _, p in problems)


async def test_findings_are_limited_per_dimension_and_all_exported_as_csv(client, marketer_headers, world):
    answer = expected.data_quality(world)
    few = (await client.get("/api/analytics/data-quality?limit=2", headers=marketer_headers)).json()
    by_dimension: dict[str, set[int]] = {}
    for f in few["findings"]:
        by_dimension.setdefault(f["dimension"], set()).add(f["customer_id"])
    assert {d: len(ids) for d, ids in by_dimension.items()} == {
        "accuracy": 2,
        "completeness": 2,
        "consistency": 2,
        "timeliness": 2,
    }
    assert few["accuracy"]["score"] == pytest.approx(answer["accuracy"])  # the limit only cuts the list

    exported = await client.get("/api/analytics/data-quality.csv", headers=marketer_headers)
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/csv")
    assert "attachment" in exported.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert set(rows[0]) == {"dimension", "customer_id", "user_id", "field", "problem"}
    got = {(r["dimension"], int(r["customer_id"]), r["field"]) for r in rows}
    want = {("accuracy", i, f) for i, f in answer["inaccurate"]}
    want |= {("completeness", i, f) for i, f in answer["missing"]}
    want |= {("consistency", i, f) for i, f in answer["conflicts"]}
    want |= {("timeliness", i, "profile") for i in answer["stale"]}
    assert got == want
    # One row per problem: a shared address whose sources also disagree is two findings, never a repeat.
    assert len(rows) == len({tuple(r.values()) for r in rows})


async def test_settings_choose_required_traits_and_timeliness(app, client, marketer_headers, world):
    app.state.settings = app.state.settings.model_copy(
        update={"analytics_required_traits": ["phone"], "analytics_timeliness_days": 30}
    )
    answer = expected.data_quality(world, required=("phone",), days=30)
    q = (await client.get("/api/analytics/data-quality", headers=marketer_headers)).json()
    assert q["required_traits"] == ["phone"] and q["timeliness_days"] == 30
    assert q["completeness"]["score"] == pytest.approx(answer["completeness"])
    assert q["timeliness"]["score"] == pytest.approx(answer["timeliness"])
    assert q["score"] == pytest.approx(answer["score"])


async def test_no_customers_no_score(client, marketer_headers, sessions):
    q = (await client.get("/api/analytics/data-quality", headers=marketer_headers)).json()
    assert q["customers"] == 0 and q["score"] is None
    assert all(q[d]["score"] is None for d in ("accuracy", "completeness", "consistency", "timeliness"))
    assert q["findings"] == []


async def test_csv_cells_are_never_spreadsheet_formulas(client, marketer_headers, sessions):
    async with transaction(sessions) as session:
        await session.execute(
            insert(Customer), [{"user_id": '=HYPERLINK("http://x")', "email": "a@@b", "traits": {}}]
        )
    exported = await client.get("/api/analytics/data-quality.csv", headers=marketer_headers)
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert rows and all(r["user_id"] == '\'=HYPERLINK("http://x")' for r in rows)


async def test_sources_are_compared_on_typed_values_alike_on_both_databases(
    client, marketer_headers, sessions, write_key
):
    # PostgreSQL compared the values as text (the number 4930123456 agreed with the string
    # "4930123456", true with "true", and 1 disagreed with 1.0); SQLite compared them as SQL values
    # (true agreed with 1). Now both compare JSON values: typed, numbers by value.
    from tests.conftest import make_key

    other = await make_key(sessions, write=True)
    pairs = {
        "digits": (4930123456, "4930123456"),  # disagree
        "flag": (True, "true"),  # disagree
        "bool-number": (True, 1),  # disagree
        "one": (1, 1.0),  # agree
        "same": ("Ada", "Ada"),  # agree
    }
    for user, values in pairs.items():
        for key, value in zip((write_key, other), values, strict=True):
            traits = {"phone": value, "first_name": value}
            got = await client.post("/v1/identify", auth=(key, ""), json={"userId": user, "traits": traits})
            assert got.status_code == 200, got.text
    got = await client.get("/api/analytics/data-quality", headers=marketer_headers)
    disagreeing = {
        (f["user_id"], f["field"])
        for f in got.json()["findings"]
        if f["dimension"] == "consistency" and "sources" in f["problem"]
    }
    assert disagreeing == {(u, f) for u in ("digits", "flag", "bool-number") for f in ("phone", "first_name")}
