"""Who names a loyalty tier: segment rules, and published journeys through the segments they use.

A programme replaced without a tier that a rule still names would leave that rule matching nobody
for it (and a journey branch on such a segment never taking that path), with nothing said."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from domain.errors import Conflict
from domain.journeys.definition import segment_references
from domain.segments import repository
from domain.segments import rules as r
from domain.segments.service import Catalog


async def refuse_removing_named(session: AsyncSession, removed: set[str]) -> None:
    """Raise 409 ``tier_in_use`` naming every segment (rule path) and published journey (node, path)
    that names one of the ``removed`` tiers. Takes the segments' rule-change lock first, so a rule
    saved meanwhile was either committed before (and is seen here) or is checked against the new
    programme once this transaction ends (segments.service._check_names)."""
    if not removed:
        return
    await repository.lock_rule_changes(session)
    catalog = Catalog(await repository.current_rules(session))
    segments = [
        {"segment_id": sid, "path": node.path, "tier": tier}
        for sid, rule in sorted(catalog.parsed.items())
        for node in r.walk(rule)
        if isinstance(node, r.LoyaltyTier)
        for tier in node.tiers
        if tier in removed
    ]
    if not segments:
        return
    # a segment referring to a naming one reads the tier too, and so does a journey using either
    naming: dict[str, set[str]] = {}
    for user in segments:
        for sid in [user["segment_id"], *catalog.dependents(user["segment_id"])]:
            naming.setdefault(sid, set()).add(user["tier"])
    uses = {
        (journey_id, ref.node or "", ref.path, ref.segment, tier)
        for journey_id, definition in await repository.published_journey_definitions(session)
        for ref in segment_references(definition)  # every version: customers may still be on an old one
        if ref.segment in naming
        for tier in naming[ref.segment]
    }
    keys = ("journey_id", "node", "path", "segment_id", "tier")
    journeys = [{**dict(zip(keys, use, strict=True)), "node": use[1] or None} for use in sorted(uses)]
    tiers = sorted({user["tier"] for user in segments})
    problem = f"loyalty tiers {', '.join(map(repr, tiers))} are named by segment rules"
    if journeys:
        problem += " and published journeys use those segments"
    detail = {"problem": problem, "tiers": tiers, "segments": segments}
    if journeys:
        detail["journeys"] = journeys
    raise Conflict(detail, code="tier_in_use")
