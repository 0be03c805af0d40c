"""A segment rule naming a tier saved at the same moment as a programme without that tier: whichever
checked first, the other must see it. Each test holds the first where it has checked and is writing,
runs the second to its end or until it waits for a lock (PostgreSQL; on SQLite the second cannot
begin before the first ends), then lets the first commit."""

from __future__ import annotations

from domain.db import transaction, utcnow
from domain.errors import Conflict, InvalidInput
from domain.loyalty import repository as loyalty_repository
from domain.loyalty import service as loyalty
from domain.loyalty.schemas import ProgramConfig
from domain.segments import repository as segment_repository
from domain.segments import service as segments
from domain.segments.schemas import SegmentIn
from tests.domain.test_segment_delete_races import _other_runs_at, _outcome
from tests.loyalty.helpers import PROGRAM

WITHOUT_GOLD = {**PROGRAM, "tiers": PROGRAM["tiers"][:2]}


async def _put(sessions, config: dict) -> None:
    async with transaction(sessions) as session:
        await loyalty.put_program(session, ProgramConfig.model_validate(config), utcnow())


async def _create_gold_segment(sessions) -> None:
    async with transaction(sessions) as session:
        await segments.create(session, SegmentIn(id="gold", name="Gold", rule={"loyalty_tier": "gold"}))


async def _tiers(sessions) -> list[str]:
    async with sessions() as session:
        return [t.name for t in (await loyalty.program(session)).tiers]


async def test_a_programme_dropping_a_tier_a_rule_being_saved_names_is_refused(engine, sessions, monkeypatch):
    await _put(sessions, PROGRAM)
    # The segment has checked its tier exists and is writing; the programme without it runs now.
    second = lambda: _put(sessions, WITHOUT_GOLD)  # noqa: E731
    async with _other_runs_at(monkeypatch, segment_repository, "add", second, engine) as started:
        await _create_gold_segment(sessions)
    refused = await _outcome(started[0])

    assert isinstance(refused, Conflict) and refused.code == "tier_in_use", refused
    assert refused.detail["segments"] == [{"segment_id": "gold", "path": "rule.loyalty_tier", "tier": "gold"}]
    assert await _tiers(sessions) == ["member", "silver", "gold"]


async def test_a_rule_naming_a_tier_the_programme_being_saved_drops_is_refused(engine, sessions, monkeypatch):
    await _put(sessions, PROGRAM)
    # The programme has found no rule naming gold and is writing; the segment naming gold runs now.
    second = lambda: _create_gold_segment(sessions)  # noqa: E731
    async with _other_runs_at(monkeypatch, loyalty_repository, "save_program", second, engine) as started:
        await _put(sessions, WITHOUT_GOLD)
    refused = await _outcome(started[0])

    assert isinstance(refused, InvalidInput), refused
    assert (
        refused.detail["path"] == "rule.loyalty_tier"
        and "no loyalty tier 'gold'" in refused.detail["problem"]
    )
    async with sessions() as session:
        assert not await segments.exists(session, "gold")
    assert await _tiers(sessions) == ["member", "silver"]
