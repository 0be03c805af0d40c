"""Two saves at the same moment that would each make a chain of references back to the other (a cycle)
or, together, a rule beyond the limits: the second must see the first. Each test holds the first save
where it has checked the references and is writing its version, runs the second to its end (or until
it waits for a lock), then lets the first commit.

On PostgreSQL each save locked only its own segment row and read the others' rules as committed, so
both passed their checks and committed a cycle: every expansion of either rule then recursed without
end (the refresher's passes failed for every segment, and so did previews and saves naming them). On
SQLite every transaction takes the write lock as it begins, so the second cannot start before the
first ends; the tests hold there too."""

from __future__ import annotations

from domain.db import transaction
from domain.errors import InvalidInput
from domain.segments import repository as segment_repository
from domain.segments import service as segments
from domain.segments.schemas import SegmentIn, SegmentUpdate
from tests.domain.test_segment_delete_races import _other_runs_at, _outcome

OWN_RULE = {"trait": "plan", "op": "exists"}


async def _update(sessions, segment_id: str, rule: dict) -> None:
    async with transaction(sessions) as session:
        await segments.update(session, segment_id, SegmentUpdate(rule=rule))


async def test_two_saves_that_would_close_a_cycle_leave_one_refused(engine, sessions, monkeypatch):
    async with transaction(sessions) as session:
        for segment_id in ("a", "b"):
            await segments.create(session, SegmentIn(id=segment_id, name=segment_id, rule=OWN_RULE))
    # a is saved to refer to b; b, saved to refer to a, runs once a's references were checked.
    second = lambda: _update(sessions, "b", {"all": [OWN_RULE, {"segment": "a"}]})  # noqa: E731
    async with _other_runs_at(monkeypatch, segment_repository, "add", second, engine) as started:
        await _update(sessions, "a", {"all": [OWN_RULE, {"segment": "b"}]})
    refused = await _outcome(started[0])

    assert isinstance(refused, InvalidInput), refused
    assert refused.detail["path"] == "rule.all[1].segment"
    assert refused.detail["problem"] == "circular reference: b -> a -> b"
    async with transaction(sessions) as session:
        assert [v.version for v in await segments.versions(session, "b")] == [1]
        # Every rule still expands, so passes and previews go on.
        await segments.refresh_from_events(session)
        await segments.refresh_window_edges(session)
        assert (await segments.get(session, "a")).version == 2


async def test_a_segment_deleted_while_a_rule_comes_to_refer_to_it_is_refused(engine, sessions, monkeypatch):
    async with transaction(sessions) as session:
        for segment_id in ("a", "b"):
            await segments.create(session, SegmentIn(id=segment_id, name=segment_id, rule=OWN_RULE))

    async def delete_b() -> None:
        async with transaction(sessions) as session:
            await segments.delete(session, "b")

    # a is saved to refer to b, which is deleted once a's references were checked. The delete found
    # no segment referring to b and went through; a's save then could not expand its rule (a 500).
    async with _other_runs_at(monkeypatch, segment_repository, "add", delete_b, engine) as started:
        await _update(sessions, "a", {"all": [OWN_RULE, {"segment": "b"}]})
    refused = await _outcome(started[0])

    assert refused is not None and refused.code == "segment_in_use", refused
    assert refused.detail["segments"] == ["a"]
    async with sessions() as session:
        assert await segments.exists(session, "b")
        assert (await segments.get(session, "a")).version == 2
