"""Reads run side by side still answer from one moment: what commits after the answer began is not
counted by any of them, and a failing read fails the answer as it would alone."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from domain.analytics import side_by_side
from domain.db import transaction
from domain.errors import NotFound


async def _add_team(sessions, team_id: str) -> None:
    async with transaction(sessions) as session:
        await session.execute(
            text("INSERT INTO teams (id, name, auto_assign, created_at) VALUES (:id, :id, false, now())"),
            {"id": team_id},
        )


async def _teams(session) -> int:
    return await session.scalar(text("SELECT count(*) FROM teams"))


async def test_every_read_sees_the_data_as_it_was_when_the_answer_began(sessions, database_url):
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite runs the reads in turn in the caller's one transaction")
    await _add_team(sessions, "before")

    async def count_after_a_commit(session):
        await _add_team(sessions, "during")  # committed before this read's first query
        return await _teams(session)

    async with sessions() as session, session.begin():
        found = await side_by_side.gather(session, count_after_a_commit, _teams, _teams)
    assert found == [1, 1, 1]
    async with sessions() as session:
        assert await _teams(session) == 2


async def test_a_failing_read_raises_its_own_error(sessions):
    async def missing(_session):
        raise NotFound("no such journey")

    async with sessions() as session, session.begin():
        with pytest.raises(NotFound):
            await side_by_side.gather(session, _teams, missing)


async def test_the_report_of_an_unknown_journey_is_404(client, marketer_headers):
    got = await client.get("/api/analytics/report", params={"journey_id": "nope"}, headers=marketer_headers)
    assert got.status_code == 404, got.text
