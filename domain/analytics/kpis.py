"""CRM KPIs over a period, their normalisation and the weighted CRM effectiveness index.

Definitions (also in the README and the API docs); a period is [from, to):
- customer satisfaction: mean CSAT rating of cases rated in the period;
- retention rate: of customers active at `from` (a purchase in the N days before it), the share also
  active at `to`;
- customer growth rate: known customers created in the period / known customers created before it;
- marketing conversion rate: of enrollments entered in the period into journeys with a goal that
  received an email, the share that reached the goal within the conversion window;
- complaint count: cases opened in the period whose reason contains a complaint term;
- ROI: revenue of purchases in the period made within the attribution window after a marketing email to
  the customer, divided by (marketing emails sent in the period x cost per message).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from config.settings import CRM_INDEX_KPIS, Settings
from domain.analytics import kpi_repository as repository
from domain.analytics import periods, side_by_side
from domain.analytics.periods import Period
from domain.analytics.schemas import (
    Complaints,
    Conversion,
    EffectivenessIndex,
    Growth,
    IndexComponent,
    KpisOut,
    Retention,
    Roi,
    Satisfaction,
    TrendOut,
    TrendPoint,
)
from domain.analytics.sql import for_reports
from domain.analytics.stats import ratio
from domain.journeys import service as journeys

T = TypeVar("T")


@dataclass(frozen=True)
class Spans(Generic[T]):
    """One KPI for each bucket, and for all the buckets together (the whole period)."""

    buckets: list[T]
    whole: T


# Each takes contiguous buckets (one for a period, more for a trend) and answers one KPI per bucket and
# for the whole span, from one query per KPI.
def _mean(total: int, n: int) -> Satisfaction:
    return Satisfaction(value=total / n if n else None, ratings=n)


async def satisfaction(session: AsyncSession, buckets: list[Period]) -> Spans[Satisfaction]:
    rows = await repository.csat(session, buckets)
    return Spans([_mean(*row) for row in rows], _mean(sum(t for t, _ in rows), sum(n for _, n in rows)))


def _retention(active: int, kept: int) -> Retention:
    return Retention(value=ratio(kept, active), active_at_start=active, retained=kept)


async def retention(session: AsyncSession, buckets: list[Period], settings: Settings) -> Spans[Retention]:
    rows, whole = await repository.retention(
        session, buckets, settings.purchase_event, settings.analytics_active_days
    )
    return Spans([_retention(*row) for row in rows], _retention(*whole))


def _growth(before: int, new: int) -> Growth:
    return Growth(value=ratio(new, before), customers_at_start=before, new_customers=new)


async def growth(session: AsyncSession, buckets: list[Period]) -> Spans[Growth]:
    rows = await repository.growth(session, buckets)
    return Spans([_growth(*row) for row in rows], _growth(rows[0][0], sum(new for _, new in rows)))


def _conversion(recipients: int, converted: int) -> Conversion:
    return Conversion(value=ratio(converted, recipients), recipients=recipients, converted=converted)


async def conversion(session: AsyncSession, buckets: list[Period], settings: Settings) -> Spans[Conversion]:
    recipients, converted = [0] * len(buckets), [0] * len(buckets)
    for journey_id, version in await repository.enrolled_versions(session, buckets):
        definition = (await journeys.get_version(session, journey_id, version)).definition
        goal = (definition.get("rules") or {}).get("goal")
        if not goal:
            continue
        window = settings.analytics_conversion_window_days
        rows = await repository.goal_conversions(session, buckets, journey_id, version, goal, window)
        for i, (n, c) in enumerate(rows):
            recipients[i] += n
            converted[i] += c
    return Spans(
        [_conversion(n, c) for n, c in zip(recipients, converted, strict=True)],
        _conversion(sum(recipients), sum(converted)),
    )


def _complaints(count: int, opened: int) -> Complaints:
    return Complaints(value=count, cases_opened=opened)


async def complaints(session: AsyncSession, buckets: list[Period], settings: Settings) -> Spans[Complaints]:
    rows = await repository.complaints(session, buckets, settings.analytics_complaint_terms)
    return Spans([_complaints(*row) for row in rows], _complaints(*map(sum, zip(*rows, strict=True))))


def _roi(revenue: float, purchases: int, sent: int, settings: Settings) -> Roi:
    cost = sent * settings.analytics_cost_per_message
    return Roi(
        value=ratio(revenue, cost),
        attributed_revenue=revenue,
        attributed_purchases=purchases,
        messages_sent=sent,
        cost=cost,
    )


async def roi(session: AsyncSession, buckets: list[Period], settings: Settings) -> Spans[Roi]:
    revenues, sent = await side_by_side.gather(
        session,
        lambda s: repository.attributed_revenue(
            s,
            buckets,
            settings.purchase_event,
            settings.revenue_property,
            settings.analytics_attribution_window_days,
        ),
        lambda s: repository.marketing_sent(s, buckets),
    )
    per_bucket = [_roi(r, p, n, settings) for (r, p), n in zip(revenues, sent, strict=True)]
    total = _roi(sum(r for r, _ in revenues), sum(p for _, p in revenues), sum(sent), settings)
    return Spans(per_bucket, total)


def normalised(out: KpisOut) -> dict[str, float | None]:
    """Each KPI on 0-1, higher is better: CSAT (x-1)/4, retention and conversion as they are, growth
    capped at 1, complaints 1 - complaint share of cases opened, ROI x/(1+x) (break-even, 1, is 0.5;
    below 0, from negative revenue, is 0)."""
    csat, growth_rate, roi_ = out.customer_satisfaction.value, out.customer_growth_rate.value, out.roi.value
    cases = out.complaint_count
    return {
        "satisfaction": (csat - 1) / 4 if csat is not None else None,
        "retention": out.retention_rate.value,
        "growth": min(1.0, growth_rate) if growth_rate is not None else None,
        "conversion": out.marketing_conversion_rate.value,
        "complaints": 1 - cases.value / cases.cases_opened if cases.cases_opened else None,
        "roi": _roi_score(roi_) if roi_ is not None else None,
    }


def _roi_score(roi_: float) -> float:
    """x/(1+x) for x >= 0. Below 0 (negative revenue: refunds recorded as purchases) is 0, the worst
    score; x/(1+x) itself divided by zero at -1 and scored anything below -1 above break-even."""
    gain = max(roi_, 0.0)
    return gain / (1 + gain)


def effectiveness(values: dict[str, float | None], weights: dict[str, float]) -> EffectivenessIndex:
    components = [
        IndexComponent(kpi=name, normalised=values[name], weight=weights.get(name, 0.0))
        for name in CRM_INDEX_KPIS
    ]
    counted = [c for c in components if c.normalised is not None and c.weight > 0]
    total = sum(c.weight for c in counted)
    value = sum(c.weight * c.normalised for c in counted) / total if total else None
    return EffectivenessIndex(value=value, components=components)


def _kpis(period: Period, s, r, g, c, k, money, settings: Settings) -> KpisOut:
    kpi = KpisOut(
        start=period.start,
        end=period.end,
        customer_satisfaction=s,
        retention_rate=r,
        customer_growth_rate=g,
        marketing_conversion_rate=c,
        complaint_count=k,
        roi=money,
        crm_effectiveness_index=EffectivenessIndex(value=None, components=[]),
    )
    kpi.crm_effectiveness_index = effectiveness(normalised(kpi), settings.analytics_index_weights)
    return kpi


async def per_bucket(
    session: AsyncSession, buckets: list[Period], settings: Settings
) -> tuple[list[KpisOut], KpisOut]:
    """Every KPI for each bucket and for the whole span, each KPI computed for all buckets in one query;
    the KPIs' queries run side by side on one snapshot."""
    await for_reports(session)
    # The longest first: they start before the others and get PostgreSQL's parallel workers.
    money, converted, kept, grown, rated, complained = await side_by_side.gather(
        session,
        lambda s: roi(s, buckets, settings),
        lambda s: conversion(s, buckets, settings),
        lambda s: retention(s, buckets, settings),
        lambda s: growth(s, buckets),
        lambda s: satisfaction(s, buckets),
        lambda s: complaints(s, buckets, settings),
    )
    found: list[Spans] = [rated, kept, grown, converted, complained, money]
    columns = zip(*(kpi.buckets for kpi in found), strict=True)
    out = [_kpis(bucket, *column, settings) for bucket, column in zip(buckets, columns, strict=True)]
    whole = Period(buckets[0].start, buckets[-1].end)
    return out, _kpis(whole, *(kpi.whole for kpi in found), settings)


async def kpis(session: AsyncSession, p: Period, settings: Settings) -> KpisOut:
    return (await per_bucket(session, [p], settings))[1]


def _trend(whole: Period, interval: str, per_bucket_kpis: list[KpisOut]) -> TrendOut:
    points = [
        TrendPoint(
            start=out.start,
            end=out.end,
            customer_satisfaction=out.customer_satisfaction.value,
            retention_rate=out.retention_rate.value,
            customer_growth_rate=out.customer_growth_rate.value,
            marketing_conversion_rate=out.marketing_conversion_rate.value,
            complaint_count=out.complaint_count.value,
            roi=out.roi.value,
            crm_effectiveness_index=out.crm_effectiveness_index.value,
        )
        for out in per_bucket_kpis
    ]
    return TrendOut(start=whole.start, end=whole.end, interval=interval, points=points)


async def trend(session: AsyncSession, whole: Period, interval: str, settings: Settings) -> TrendOut:
    """The KPIs of each calendar bucket of the period (the first and last cut to it)."""
    return (await overview(session, whole, interval, settings))[1]


async def overview(
    session: AsyncSession, whole: Period, interval: str, settings: Settings
) -> tuple[KpisOut, TrendOut]:
    """The period's KPIs and their trend, from the same queries (the buckets cover the period)."""
    out, total = await per_bucket(session, periods.buckets(whole, interval), settings)
    return total, _trend(whole, interval, out)
