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

from sqlalchemy.ext.asyncio import AsyncSession

from config.settings import CRM_INDEX_KPIS, Settings
from domain.analytics import kpi_repository as repository
from domain.analytics import periods
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


# Each takes contiguous buckets (one for a period, more for a trend) and answers one KPI per bucket.
async def satisfaction(session: AsyncSession, buckets: list[Period]) -> list[Satisfaction]:
    return [Satisfaction(value=m, ratings=n) for m, n in await repository.csat(session, buckets)]


async def retention(session: AsyncSession, buckets: list[Period], settings: Settings) -> list[Retention]:
    rows = await repository.retention(
        session, buckets, settings.purchase_event, settings.analytics_active_days
    )
    return [
        Retention(value=ratio(kept, active), active_at_start=active, retained=kept) for active, kept in rows
    ]


async def growth(session: AsyncSession, buckets: list[Period]) -> list[Growth]:
    return [
        Growth(value=ratio(new, before), customers_at_start=before, new_customers=new)
        for before, new in await repository.growth(session, buckets)
    ]


async def conversion(session: AsyncSession, buckets: list[Period], settings: Settings) -> list[Conversion]:
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
    return [
        Conversion(value=ratio(c, n), recipients=n, converted=c)
        for n, c in zip(recipients, converted, strict=True)
    ]


async def complaints(session: AsyncSession, buckets: list[Period], settings: Settings) -> list[Complaints]:
    rows = await repository.complaints(session, buckets, settings.analytics_complaint_terms)
    return [Complaints(value=count, cases_opened=opened) for count, opened in rows]


async def roi(session: AsyncSession, buckets: list[Period], settings: Settings) -> list[Roi]:
    revenues = await repository.attributed_revenue(
        session,
        buckets,
        settings.purchase_event,
        settings.revenue_property,
        settings.analytics_attribution_window_days,
    )
    sent = await repository.marketing_sent(session, buckets)
    out = []
    for (revenue, purchases), count in zip(revenues, sent, strict=True):
        cost = count * settings.analytics_cost_per_message
        out.append(
            Roi(
                value=ratio(revenue, cost),
                attributed_revenue=revenue,
                attributed_purchases=purchases,
                messages_sent=count,
                cost=cost,
            )
        )
    return out


def normalised(out: KpisOut) -> dict[str, float | None]:
    """Each KPI on 0-1, higher is better: CSAT (x-1)/4, retention and conversion as they are, growth
    capped at 1, complaints 1 - complaint share of cases opened, ROI x/(1+x) (break-even, 1, is 0.5)."""
    csat, growth_rate, roi_ = out.customer_satisfaction.value, out.customer_growth_rate.value, out.roi.value
    cases = out.complaint_count
    return {
        "satisfaction": (csat - 1) / 4 if csat is not None else None,
        "retention": out.retention_rate.value,
        "growth": min(1.0, growth_rate) if growth_rate is not None else None,
        "conversion": out.marketing_conversion_rate.value,
        "complaints": 1 - cases.value / cases.cases_opened if cases.cases_opened else None,
        "roi": roi_ / (1 + roi_) if roi_ is not None else None,
    }


def effectiveness(values: dict[str, float | None], weights: dict[str, float]) -> EffectivenessIndex:
    components = [
        IndexComponent(kpi=name, normalised=values[name], weight=weights.get(name, 0.0))
        for name in CRM_INDEX_KPIS
    ]
    counted = [c for c in components if c.normalised is not None and c.weight > 0]
    total = sum(c.weight for c in counted)
    value = sum(c.weight * c.normalised for c in counted) / total if total else None
    return EffectivenessIndex(value=value, components=components)


async def per_bucket(session: AsyncSession, buckets: list[Period], settings: Settings) -> list[KpisOut]:
    """Every KPI for each bucket, each KPI computed for all buckets in one query."""
    await for_reports(session)
    columns = zip(
        await satisfaction(session, buckets),
        await retention(session, buckets, settings),
        await growth(session, buckets),
        await conversion(session, buckets, settings),
        await complaints(session, buckets, settings),
        await roi(session, buckets, settings),
        strict=True,
    )
    out = []
    for bucket, (s, r, g, c, k, money) in zip(buckets, columns, strict=True):
        kpi = KpisOut(
            start=bucket.start,
            end=bucket.end,
            customer_satisfaction=s,
            retention_rate=r,
            customer_growth_rate=g,
            marketing_conversion_rate=c,
            complaint_count=k,
            roi=money,
            crm_effectiveness_index=EffectivenessIndex(value=None, components=[]),
        )
        kpi.crm_effectiveness_index = effectiveness(normalised(kpi), settings.analytics_index_weights)
        out.append(kpi)
    return out


async def kpis(session: AsyncSession, p: Period, settings: Settings) -> KpisOut:
    return (await per_bucket(session, [p], settings))[0]


async def trend(session: AsyncSession, whole: Period, interval: str, settings: Settings) -> TrendOut:
    """The KPIs of each calendar bucket of the period (the first and last cut to it)."""
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
        for out in await per_bucket(session, periods.buckets(whole, interval), settings)
    ]
    return TrendOut(start=whole.start, end=whole.end, interval=interval, points=points)
