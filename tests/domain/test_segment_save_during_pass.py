"""A new rule saved while a background pass is evaluating the old one: the pass and the save take turns,
so the membership left is the new rule's. The test holds the pass where it enters customers by the rule
it read, runs the save to its end (or until it waits for a lock), then lets the pass go on.

On PostgreSQL the save rebuilt the segment by its new rule without seeing the pass's uncommitted
entries, and the pass then entered customers by the old rule: they stayed members under a rule they do
not match (with a Segment Entered) until some event of theirs moved them again. On SQLite every
transaction takes the write lock as it begins, so the save cannot start before the pass ends."""

from __future__ import annotations

from sqlalchemy import select

from domain.customers.models import Customer
from domain.db import transaction
from domain.segments import compiler
from domain.segments import repository as segment_repository
from domain.segments import service as segments
from domain.segments.schemas import SegmentUpdate
from runtime.segment_refresher import SegmentRefresher
from tests.domain.test_segment_delete_races import _other_runs_at
from tests.domain.test_segment_membership import _age_profiles, _create, _identify, _members


async def test_a_rule_saved_while_a_pass_enters_by_the_old_one_keeps_the_new_rules_members(
    engine, sessions, monkeypatch
):
    await _create(sessions, "city", {"trait": "city", "op": "equals", "value": "Berlin"})
    await _identify(sessions, "bob", city="Paris")
    refresher = SegmentRefresher(sessions)
    await refresher.refresh_once()
    await _age_profiles(sessions)
    await _identify(sessions, "ada", city="Berlin")  # for the next pass: she matches the old rule

    async def save_new_rule() -> None:
        async with transaction(sessions) as session:
            rule = {"trait": "city", "op": "equals", "value": "Paris"}
            await segments.update(session, "city", SegmentUpdate(rule=rule))

    hook = _other_runs_at(monkeypatch, segment_repository, "enter_matching", save_new_rule, engine)
    async with hook as started:
        await refresher.refresh_once()
    await started[0]

    async with sessions() as session:
        catalog = await segments._catalog(session)
        expected = await segment_repository.matching_ids(
            session,
            compiler.members_query(catalog.expanded("city"), engine.dialect.name, segments.utcnow()),
        )
        users = dict((await session.execute(select(Customer.id, Customer.user_id))).all())
    assert {users[cid] for cid in expected} == {"bob"}
    assert await _members(sessions, "city") == {"bob"}  # Ada was entered by the old rule after the save
