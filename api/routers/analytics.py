"""Analytics: CRM KPIs, campaign numbers, the data-quality review and the HTML report (marketers)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, StreamingResponse

from api.deps import ManagementCredentials, Marketer, Session, _management_principal, require
from config.settings import Settings
from domain.analytics import campaigns, kpis, periods, quality, report
from domain.analytics.schemas import (
    BroadcastAnalytics,
    DataQualityOut,
    JourneyAnalytics,
    KpisOut,
    TemplatesOut,
    TrendOut,
)
from domain.auth.schemas import Principal, Role
from domain.db import utcnow
from domain.errors import DomainError, Unauthorized

router = APIRouter(prefix="/api/analytics", tags=["analytics"])


def _from():
    return Query(
        None,
        alias="from",
        description="Start, included: ISO date (midnight UTC) or date-time, from 1900-01-01 to 2200-01-01.",
    )


def _to():
    return Query(
        None,
        alias="to",
        description="End, excluded: ISO date or date-time, from 1900-01-01 to 2200-01-01. Default: now.",
    )


_NO_STORE = {"Cache-Control": "no-store, private"}
_CHALLENGE = {"WWW-Authenticate": 'Basic realm="Journeys analytics", charset="UTF-8"'}
_marketer = require(Role.marketer)


def _settings(request: Request) -> Settings:
    return request.app.state.settings


async def _browser_marketer(
    request: Request, session: Session, credentials: ManagementCredentials
) -> Principal:
    """As Marketer, but a browser without a key is asked for one (HTTP Basic: the key as user name)."""
    try:
        principal = await _management_principal(request, session, credentials)
    except Unauthorized as exc:
        raise HTTPException(401, detail=exc.detail, headers=_CHALLENGE) from exc
    return await _marketer(principal)


BrowserMarketer = Annotated[Principal, Depends(_browser_marketer)]

KPI_DOCS = """Every KPI over the half-open period [from, to) (default: the 30 days before now). A rate whose
denominator is 0 is null.

* **customer_satisfaction**: mean CSAT rating (1-5) of cases rated in the period (`csat_at`).
* **retention_rate**: customers active at `from` (a purchase, `JOURNEYS_PURCHASE_EVENT`, in the
  `JOURNEYS_ANALYTICS_ACTIVE_DAYS` days before it) who are also active at `to` (a purchase in the same
  number of days before `to`), over those active at `from`.
* **customer_growth_rate**: known customers (with a userId) created in the period over known customers
  created before `from`.
* **marketing_conversion_rate**: enrollments entered in the period, into journey versions with a goal,
  that received at least one sent email (recipients); the share of them whose customer reached the goal
  (the goal event, or `Segment Entered` of a goal segment) within `JOURNEYS_ANALYTICS_CONVERSION_WINDOW_DAYS`
  of entering.
* **complaint_count**: cases opened in the period whose reason contains one of
  `JOURNEYS_ANALYTICS_COMPLAINT_TERMS` (case-insensitive); `cases_opened` counts them all.
* **roi**: revenue (`JOURNEYS_REVENUE_PROPERTY`) of purchases in the period that follow a sent marketing
  email to the same customer within `JOURNEYS_ANALYTICS_ATTRIBUTION_WINDOW_DAYS` (sent_at in
  [purchase - window, purchase)), over the cost of the marketing emails sent in the period
  (count x `JOURNEYS_ANALYTICS_COST_PER_MESSAGE`).
* **crm_effectiveness_index**: sum of weight x normalised KPI over the KPIs that are not null, divided
  by the sum of their weights (`JOURNEYS_ANALYTICS_INDEX_WEIGHTS`). Normalised: satisfaction (CSAT-1)/4;
  retention and conversion as they are; growth capped at 1; complaints 1 - complaint_count/cases_opened;
  ROI x/(1+x).
"""


@router.get("/kpis", response_model=KpisOut, summary="CRM KPIs over a period", description=KPI_DOCS)
async def get_kpis(
    request: Request, session: Session, _: Marketer, start: str | None = _from(), end: str | None = _to()
) -> KpisOut:
    period = periods.period(start, end, now=utcnow())
    return await kpis.kpis(session, period, _settings(request))


@router.get(
    "/kpis/trend",
    response_model=TrendOut,
    summary="The KPIs of each day, ISO week or month of a period",
    description="Each point is the KPIs (as in /api/analytics/kpis) of one calendar bucket in UTC; the "
    "first and last buckets are cut to the period. Default period: the 12 weeks before now; at most 60 "
    "buckets.",
)
async def get_trend(
    request: Request,
    session: Session,
    _: Marketer,
    start: str | None = _from(),
    end: str | None = _to(),
    interval: str = Query("week", description="day, week or month"),
) -> TrendOut:
    period = periods.period(start, end, now=utcnow(), default_days=84)
    return await kpis.trend(session, period, interval, _settings(request))


JOURNEY_DOCS = """Per node: `entered` (enrollments whose first visit to the node began in the period; for the
entry node, enrollments entered), `converted` (of those, enrollments whose customer reached the goal within
`window_days` after the visit, null for a journey without a goal) and, for messages of the node created in the
period: sent, delivered (sent, not bounced), bounced and unsubscribed (the customer's bounce or unsubscribe
credited to their latest message of the previous `JOURNEYS_ANALYTICS_ATTRIBUTION_WINDOW_DAYS`), opened and
clicked (Email Opened / Email Link Clicked events naming the message). `links` are the moves between nodes and
where enrollments ended (holdout, goal, exited, failed, waiting, left). `uplift`, for each split with a
holdout: conversion of every path together (treatment) against the holdout within the window after the split,
the difference with its 95 % Newcombe interval, and `detected` when that interval excludes 0.
Without from/to: all time."""


@router.get(
    "/journeys/{journey_id}",
    response_model=JourneyAnalytics,
    response_model_by_alias=True,
    summary="A journey's funnel per node, its graph and holdout uplift",
    description=JOURNEY_DOCS,
)
async def journey_analytics(
    request: Request,
    session: Session,
    _: Marketer,
    journey_id: str = Path(max_length=64),
    start: str | None = _from(),
    end: str | None = _to(),
    window_days: float | None = Query(
        None,
        gt=0,
        le=366,
        description="Conversion window; default JOURNEYS_ANALYTICS_CONVERSION_WINDOW_DAYS.",
    ),
) -> JourneyAnalytics:
    period = periods.optional_period(start, end, now=utcnow())
    return await campaigns.journey(session, journey_id, period, _settings(request), window_days)


@router.get(
    "/broadcasts/{broadcast_id}",
    response_model=BroadcastAnalytics,
    summary="A broadcast's delivery, engagement and conversions",
    description="Message numbers as for journey nodes; `converted`: sent messages whose recipient made a "
    "purchase within JOURNEYS_ANALYTICS_ATTRIBUTION_WINDOW_DAYS after the send.",
)
async def broadcast_analytics(
    request: Request, session: Session, _: Marketer, broadcast_id: str = Path(max_length=64)
) -> BroadcastAnalytics:
    return await campaigns.broadcast(session, broadcast_id, _settings(request))


@router.get(
    "/templates",
    response_model=TemplatesOut,
    summary="Engagement per template",
    description="For messages created in [from, to) (default: the last 30 days), per template: sent, "
    "delivered, bounced, opened, clicked, unsubscribed and their rates over delivered messages.",
)
async def template_engagement(
    request: Request, session: Session, _: Marketer, start: str | None = _from(), end: str | None = _to()
) -> TemplatesOut:
    period = periods.period(start, end, now=utcnow())
    return await campaigns.templates(session, period, _settings(request))


QUALITY_DOCS = (
    quality.__doc__.split("\n\n", 1)[1]
    + "\nThe score is null without customers. `findings` lists the first `limit` customers with a "
    "problem per dimension; `/api/analytics/data-quality.csv` exports every finding."
)


@router.get(
    "/data-quality",
    response_model=DataQualityOut,
    summary="The CRM review: customer data quality and the findings behind it",
    description=QUALITY_DOCS,
)
async def data_quality(
    request: Request,
    session: Session,
    _: Marketer,
    limit: int = Query(100, ge=0, le=10_000, description="Customers with findings listed per dimension."),
) -> DataQualityOut:
    return await quality.review(session, _settings(request), now=utcnow(), limit=limit)


@router.get(
    "/data-quality.csv",
    summary="Every data-quality finding as CSV",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}}},
)
async def data_quality_csv(request: Request, _: Marketer) -> StreamingResponse:
    settings, sessions = _settings(request), request.app.state.sessions

    async def body():
        async with sessions() as session:  # outlives the request's session: the export streams
            async for chunk in quality.findings_csv(session, settings, now=utcnow()):
                yield chunk

    return StreamingResponse(
        body(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="data-quality-findings.csv"'},
    )


@router.get(
    "/report",
    response_class=HTMLResponse,
    summary="The analytics report page (HTML)",
    description="KPI cards and trends, a journey's graph with per-node numbers, its funnel and uplift, the "
    "value tiers and the data-quality review. A browser is asked for the API key (HTTP Basic, the key as "
    "user name, no password).",
)
async def report_page(
    request: Request,
    session: Session,
    _: BrowserMarketer,
    # No length bound: an id longer than any is no journey's, and the page says so (a bound would
    # answer a browser with the API's JSON).
    journey_id: str | None = Query(None, description="Default: the latest published journey."),
    start: str | None = _from(),
    end: str | None = _to(),
    interval: str = Query("month", description="Trend buckets: day, week or month (each costs a KPI call)."),
) -> HTMLResponse:
    now = utcnow()
    try:
        period = periods.period(start, end, now=now, default_days=84)
        html = await report.page(session, _settings(request), period, interval, journey_id, now=now)
    except DomainError as err:
        # The page's own form can ask for what it cannot show (a day per bucket over 84 days): a browser
        # gets a page naming the problem; other clients the API's JSON, as from every endpoint.
        if "text/html" not in request.headers.get("accept", ""):
            raise
        return HTMLResponse(report.error_page(err.detail), err.status_code, headers=_NO_STORE)
    return HTMLResponse(html, headers=_NO_STORE)


@router.get("/report/plotly.min.js", include_in_schema=False)
async def plotly_js(_: BrowserMarketer) -> FileResponse:
    return FileResponse(
        report.PLOTLY_JS, media_type="text/javascript", headers={"Cache-Control": "private, max-age=86400"}
    )
