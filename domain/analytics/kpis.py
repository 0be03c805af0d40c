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
from domain.analytics.periods import Period, buckets
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
from domain.analytics.stats import ratio
from domain.journeys import service as journeys


async def satisfaction(session: AsyncSession, p: Period) -> Satisfaction:
    mean, ratings = await repository.csat(session, p)
    return Satisfaction(value=mean, ratings=ratings)


async def retention(session: AsyncSession, p: Period, settings: Settings) -> Retention:
    active, retained = await repository.retention(
        session, p, settings.purchase_event, settings.analytics_active_days
    )
    return Retention(value=ratio(retained, active), active_at_start=active, retained=retained)


async def growth(session: AsyncSession, p: Period) -> Growth:
    at_start, new = await repository.growth(session, p)
    return Growth(value=ratio(new, at_start), customers_at_start=at_start, new_customers=new)


async def conversion(session: AsyncSession, p: Period, settings: Settings) -> Conversion:
    recipients = converted = 0
    for journey_id, version in await repository.enrolled_versions(session, p):
        goal = (
            (await journeys.get_version(session, journey_id, version)).definition.get("rules", {}).get("goal")
        )
        if not goal:
            continue
        n, c = await repository.goal_conversions(
            session, p, journey_id, version, goal, settings.analytics_conversion_window_days
        )
        recipients += n
        converted += c
    return Conversion(value=ratio(converted, recipients), recipients=recipients, converted=converted)


async def complaints(session: AsyncSession, p: Period, settings: Settings) -> Complaints:
    count, opened = await repository.complaints(session, p, settings.analytics_complaint_terms)
    return Complaints(value=count, cases_opened=opened)


async def roi(session: AsyncSession, p: Period, settings: Settings) -> Roi:
    revenue, purchases = await repository.attributed_revenue(
        session,
        p,
        settings.purchase_event,
        settings.revenue_property,
        settings.analytics_attribution_window_days,
    )
    sent = await repository.marketing_sent(session, p)
    cost = sent * settings.analytics_cost_per_message
    return Roi(
        value=ratio(revenue, cost),
        attributed_revenue=revenue,
        attributed_purchases=purchases,
        messages_sent=sent,
        cost=cost,
    )


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


async def kpis(session: AsyncSession, p: Period, settings: Settings) -> KpisOut:
    out = KpisOut(
        start=p.start,
        end=p.end,
        customer_satisfaction=await satisfaction(session, p),
        retention_rate=await retention(session, p, settings),
        customer_growth_rate=await growth(session, p),
        marketing_conversion_rate=await conversion(session, p, settings),
        complaint_count=await complaints(session, p, settings),
        roi=await roi(session, p, settings),
        crm_effectiveness_index=EffectivenessIndex(value=None, components=[]),
    )
    out.crm_effectiveness_index = effectiveness(normalised(out), settings.analytics_index_weights)
    return out


async def trend(session: AsyncSession, whole: Period, interval: str, settings: Settings) -> TrendOut:
    """The KPIs of each calendar bucket of the period (the first and last cut to it)."""
    points = []
    for bucket in buckets(whole, interval):
        out = await kpis(session, bucket, settings)
        points.append(
            TrendPoint(
                start=bucket.start,
                end=bucket.end,
                customer_satisfaction=out.customer_satisfaction.value,
                retention_rate=out.retention_rate.value,
                customer_growth_rate=out.customer_growth_rate.value,
                marketing_conversion_rate=out.marketing_conversion_rate.value,
                complaint_count=out.complaint_count.value,
                roi=out.roi.value,
                crm_effectiveness_index=out.crm_effectiveness_index.value,
            )
        )
    return TrendOut(start=whole.start, end=whole.end, interval=interval, points=points)
