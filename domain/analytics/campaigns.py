"""Campaign analytics: a journey's graph with per-node numbers and holdout uplift, a broadcast's
numbers, and engagement per template."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from config.settings import Settings
from domain.analytics import campaign_repository as repository
from domain.analytics import side_by_side
from domain.analytics.campaign_repository import MessageCounts
from domain.analytics.periods import Period
from domain.analytics.schemas import (
    BroadcastAnalytics,
    GroupConversion,
    JourneyAnalytics,
    Link,
    NodeStats,
    TemplatesOut,
    TemplateStats,
    Uplift,
)
from domain.analytics.sql import for_reports
from domain.analytics.stats import newcombe, ratio, wilson
from domain.broadcasts import service as broadcasts
from domain.journeys import service as journeys

HOLDOUT = "holdout"
ENTRY = "entry"
# How an enrollment's last step ended, as drawn at the end of the graph.
ENDS = {
    "holdout": "holdout",
    "converted": "goal",
    "exited": "exited",
    "failed": "failed",
    "waiting": "waiting",
}


def message_stats(counts: MessageCounts) -> dict[str, Any]:
    delivered = counts.sent - counts.bounced_after_sent
    return {
        "sent": counts.sent,
        "delivered": delivered,
        "bounced": counts.bounced,
        "opened": counts.opened,
        "clicked": counts.clicked,
        "unsubscribed": counts.unsubscribed,
        "failed": counts.failed,
        "skipped": counts.skipped,
        "open_rate": ratio(counts.opened, delivered),
        "click_rate": ratio(counts.clicked, delivered),
        "click_to_open_rate": ratio(counts.clicked, counts.opened),
        "unsubscribe_rate": ratio(counts.unsubscribed, delivered),
    }


def _group(group: str, entered: int, converted: int) -> GroupConversion:
    return GroupConversion(
        group=group,
        entered=entered,
        converted=converted,
        rate=ratio(converted, entered),
        interval=wilson(converted, entered) if entered else None,
    )


def uplift(split_node: str, groups: dict[str, tuple[int, int]]) -> Uplift:
    """Treatment (every path) against the holdout of one split: (entered, converted) per outcome."""
    paths = sorted(g for g in groups if g.startswith("path:"))
    n_t = sum(groups[g][0] for g in paths)
    x_t = sum(groups[g][1] for g in paths)
    n_h, x_h = groups.get(HOLDOUT, (0, 0))
    difference = interval = None
    detected = False
    if n_t and n_h:
        found = newcombe(x_t, n_t, x_h, n_h)
        difference, interval, detected = found.difference, (found.low, found.high), found.excludes_zero
    return Uplift(
        split_node=split_node,
        treatment=_group("treatment", n_t, x_t),
        holdout=_group(HOLDOUT, n_h, x_h),
        paths=[_group(g, *groups[g]) for g in paths],
        difference=difference,
        interval=interval,
        detected=detected,
    )


async def _versions(session: AsyncSession, journey_id: str, numbers) -> dict[int, dict[str, Any]]:
    return {v: (await journeys.get_version(session, journey_id, v)).definition for v in sorted(numbers)}


def _goal(definition: dict[str, Any]) -> dict[str, Any] | None:
    return (definition.get("rules") or {}).get("goal") or None


async def _visits(
    session: AsyncSession,
    journey_id: str,
    definitions: dict[int, dict[str, Any]],
    enrolled_by_version: dict[int, int],
    window: float,
    p: Period | None,
) -> tuple[dict[str, dict[str | None, list[int]]], int]:
    """First visits per node and outcome as [entered, converted], summed over versions (each with its
    own goal), and the enrollments that converted."""
    reads, conversions = [], []
    for version, definition in definitions.items():
        goal = _goal(definition)
        if goal and enrolled_by_version.get(version):
            conversions.append(len(reads))
            reads.append(
                lambda s, v=version, g=goal: repository.enrollment_conversions(s, journey_id, v, g, window, p)
            )
        reads.append(lambda s, v=version, g=goal: repository.first_visits(s, journey_id, v, g, window, p))
    found = await side_by_side.gather(session, *reads)
    converted = sum(found[i] for i in conversions)
    visits: dict[str, dict[str | None, list[int]]] = {}
    for i, rows in enumerate(found):
        if i in conversions:
            continue
        for node_id, outcome, n, c in rows:
            slot = visits.setdefault(node_id, {}).setdefault(outcome, [0, 0])
            slot[0] += n
            slot[1] += c or 0
    return visits, converted


def _links(moves, ends, entry_id: str, types: dict[str, str]) -> list[Link]:
    links = [Link(source=source or entry_id, target=target, count=n) for source, target, n in moves]
    for node, end, n in ends:
        if end in ENDS:
            links.append(Link(source=node, target=ENDS[end], count=n))
        elif types.get(node) != "exit":  # a step without a next node: the enrollment left there
            links.append(Link(source=node, target="left", count=n))
    return sorted(links, key=lambda link: (-link.count, link.source, link.target))


async def journey(
    session: AsyncSession,
    journey_id: str,
    p: Period | None,
    settings: Settings,
    window_days: float | None = None,
) -> JourneyAnalytics:
    found = await journeys.get(session, journey_id)  # 404 for an unknown journey
    await for_reports(session)
    window = window_days or settings.analytics_conversion_window_days
    attribution = settings.analytics_attribution_window_days

    async def versions_and_visits(s: AsyncSession):
        enrolled_by_version = await repository.enrollments_by_version(s, journey_id, p)
        published = {found.published_version} if found.published_version else set()
        definitions = await _versions(s, journey_id, set(enrolled_by_version) | published)
        visits = await _visits(s, journey_id, definitions, enrolled_by_version, window, p)
        return enrolled_by_version, definitions, visits

    # Visits, messages and moves are independent reads: side by side, on one snapshot.
    (
        (enrolled_by_version, definitions, (visits, converted)),
        messages,
        (moves, ends),
    ) = await side_by_side.gather(
        session,
        versions_and_visits,
        lambda s: repository.journey_messages(s, journey_id, p, attribution),
        lambda s: repository.transitions(s, journey_id, p),
    )
    # The graph drawn is the running version's (the draft before the first publish).
    latest = definitions[found.published_version] if found.published_version else found.definition
    has_goal = any(_goal(d) for d in definitions.values())
    enrolled = sum(enrolled_by_version.values())

    types = {n["id"]: n["type"] for d in definitions.values() for n in d.get("nodes", [])}
    types.update({n["id"]: n["type"] for n in latest.get("nodes", [])})
    entry_id = next((n["id"] for n in latest.get("nodes", []) if n["type"] == ENTRY), ENTRY)
    order = [n["id"] for n in latest.get("nodes", [])]
    order += sorted((set(visits) | set(messages)) - set(order))
    nodes = []
    for node_id in order:
        outcomes = visits.get(node_id, {})
        entered = enrolled if node_id == entry_id else sum(n for n, _ in outcomes.values())
        node_converted = converted if node_id == entry_id else sum(c for _, c in outcomes.values())
        nodes.append(
            NodeStats(
                node_id=node_id,
                type=types.get(node_id, "unknown"),
                entered=entered,
                converted=node_converted if has_goal else None,
                conversion_rate=ratio(node_converted, entered) if has_goal else None,
                **message_stats(messages.get(node_id, MessageCounts())),
            )
        )
    uplifts = [
        uplift(node_id, {outcome: tuple(v) for outcome, v in visits[node_id].items() if outcome})
        for node_id in order
        if types.get(node_id) == "split" and HOLDOUT in visits.get(node_id, {})
    ]
    return JourneyAnalytics(
        journey_id=journey_id,
        name=found.name,
        start=p.start if p else None,
        end=p.end if p else None,
        conversion_window_days=window,
        goal=_goal(latest),
        enrolled=enrolled,
        converted=converted if has_goal else None,
        conversion_rate=ratio(converted, enrolled) if has_goal else None,
        nodes=nodes,
        links=_links(moves, ends, entry_id, types),
        uplift=uplifts,
    )


async def broadcast(session: AsyncSession, broadcast_id: str, settings: Settings) -> BroadcastAnalytics:
    row = await broadcasts.get(session, broadcast_id)  # 404 for an unknown broadcast
    await for_reports(session)
    window = settings.analytics_attribution_window_days
    where = repository.broadcast_filter(broadcast_id)
    counts = (await repository.message_counts(session, where, None, None, window)).get("all", MessageCounts())
    stats = message_stats(counts)
    bought = await repository.purchases_after_messages(session, where, settings.purchase_event, window)
    return BroadcastAnalytics(
        broadcast_id=row.id,
        name=row.name,
        kind=row.kind,
        template_id=row.template_id,
        status=row.status,
        converted=bought,
        conversion_rate=ratio(bought, stats["delivered"]),
        attribution_window_days=window,
        **stats,
    )


async def templates(session: AsyncSession, p: Period, settings: Settings) -> TemplatesOut:
    await for_reports(session)
    counts = await repository.template_messages(session, p, settings.analytics_attribution_window_days)
    return TemplatesOut(
        start=p.start,
        end=p.end,
        templates=[TemplateStats(template_id=t, **message_stats(c)) for t, c in sorted(counts.items())],
    )
