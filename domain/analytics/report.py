"""The HTML report: the numbers of this area drawn with Plotly (figures built here as JSON, rendered in
the browser by the plotly.min.js that Plotly's Python package ships and the API serves; nothing is
loaded from elsewhere)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import plotly
import plotly.graph_objects as go
from jinja2 import Environment, FileSystemLoader, select_autoescape
from plotly.subplots import make_subplots
from sqlalchemy.ext.asyncio import AsyncSession

from config.settings import Settings
from domain.analytics import campaigns, kpis, quality, side_by_side
from domain.analytics.periods import Period
from domain.analytics.schemas import DataQualityOut, JourneyAnalytics, KpisOut, TrendOut
from domain.journeys import service as journeys
from domain.segments import service as segments
from domain.segments.schemas import TiersOut

PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
TEMPLATES = Path(__file__).resolve().parents[2] / "templates" / "analytics"
_pages = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True))
PERCENT = {"tickformat": ".0%", "rangemode": "tozero"}
# Where enrollments end, drawn as the graph's last column.
END_LABELS = {
    "holdout": "holdout (left at the split)",
    "goal": "goal reached",
    "exited": "exited",
    "failed": "failed",
    "waiting": "waiting now",
    "left": "left the journey",
}


def _layout(title: str, **extra: Any) -> dict[str, Any]:
    return {
        "title": {"text": title},
        "margin": {"l": 50, "r": 20, "t": 50, "b": 40},
        "font": {"family": "system-ui, sans-serif", "size": 12},
        **extra,
    }


def journey_graph(journey: JourneyAnalytics) -> go.Figure:
    """The journey as a Sankey diagram: nodes labelled with how many entered, links with how many moved."""
    by_id = {n.node_id: n for n in journey.nodes}
    names = [n.node_id for n in journey.nodes]
    for link in journey.links:
        for name in (link.source, link.target):
            if name not in by_id and name not in names:
                names.append(name)
    index = {name: i for i, name in enumerate(names)}
    arriving: dict[str, int] = {}
    for link in journey.links:
        arriving[link.target] = arriving.get(link.target, 0) + link.count
    labels, hovers = [], []
    for name in names:
        node = by_id.get(name)
        if node is None:
            labels.append(f"{END_LABELS.get(name, name)} · {arriving.get(name, 0)}")
            hovers.append(END_LABELS.get(name, name))
            continue
        labels.append(f"{name} · {node.entered}")
        detail = f"{node.type}<br>entered {node.entered}"
        if node.converted is not None:
            detail += f"<br>converted {node.converted}"
        if node.type == "send_email":
            detail += (
                f"<br>sent {node.sent}, delivered {node.delivered}<br>opened {node.opened}, "
                f"clicked {node.clicked}<br>unsubscribed {node.unsubscribed}, bounced {node.bounced}"
            )
        hovers.append(detail)
    figure = go.Figure(
        go.Sankey(
            arrangement="snap",
            node={
                "label": labels,
                "customdata": hovers,
                "hovertemplate": "%{customdata}<extra></extra>",
                "pad": 18,
            },
            link={
                "source": [index[link.source] for link in journey.links],
                "target": [index[link.target] for link in journey.links],
                "value": [link.count for link in journey.links],
            },
        )
    )
    figure.update_layout(**_layout(f"Journey {journey.name}: who went where", height=420))
    return figure


def funnel(journey: JourneyAnalytics) -> go.Figure:
    emails = [n for n in journey.nodes if n.type == "send_email"]
    stages = [
        ("Entered", journey.enrolled),
        ("Sent", sum(n.sent for n in emails)),
        ("Delivered", sum(n.delivered for n in emails)),
        ("Opened", sum(n.opened for n in emails)),
        ("Clicked", sum(n.clicked for n in emails)),
    ]
    if journey.converted is not None:
        stages.append(("Converted", journey.converted))
    figure = go.Figure(
        go.Funnel(
            y=[s for s, _ in stages],
            x=[n for _, n in stages],
            textinfo="value+percent initial",
            name="funnel",
        )
    )
    figure.update_layout(**_layout("Funnel (emails summed over the journey's send steps)", height=360))
    return figure


def uplift_chart(journey: JourneyAnalytics) -> go.Figure | None:
    if not journey.uplift:
        return None
    figure = go.Figure()
    for found in journey.uplift:
        groups = [found.holdout, found.treatment]
        figure.add_bar(
            name=found.split_node,
            x=[f"{found.split_node}: {g.group}" for g in groups],
            y=[g.rate or 0 for g in groups],
            text=[f"{g.converted}/{g.entered}" for g in groups],
            error_y={
                "type": "data",
                "symmetric": False,
                "array": [(g.interval[1] - (g.rate or 0)) if g.interval else 0 for g in groups],
                "arrayminus": [((g.rate or 0) - g.interval[0]) if g.interval else 0 for g in groups],
            },
        )
    verdicts = []
    for found in journey.uplift:
        if found.difference is None:
            verdicts.append(f"{found.split_node}: not measurable yet")
        else:
            low, high = found.interval
            verdict = "uplift detected" if found.detected else "no uplift detected"
            verdicts.append(
                f"{found.split_node}: {found.difference:+.1%} [{low:+.1%}, {high:+.1%}], {verdict}"
            )
    figure.update_layout(
        **_layout(
            "Conversion against the holdout (95 % intervals)<br><sub>" + "; ".join(verdicts) + "</sub>"
        ),
        yaxis=PERCENT,
        height=360,
        showlegend=False,
    )
    return figure


def trend_chart(trend: TrendOut) -> go.Figure:
    x = [p.start.date().isoformat() for p in trend.points]
    figure = make_subplots(
        rows=3,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.08,
        subplot_titles=("Rates", "Customer satisfaction (CSAT 1-5)", "Complaints and ROI"),
        specs=[[{}], [{}], [{"secondary_y": True}]],
    )
    for name, attribute in (
        ("retention rate", "retention_rate"),
        ("growth rate", "customer_growth_rate"),
        ("marketing conversion rate", "marketing_conversion_rate"),
        ("CRM effectiveness index", "crm_effectiveness_index"),
    ):
        figure.add_scatter(
            x=x,
            y=[getattr(p, attribute) for p in trend.points],
            name=name,
            mode="lines+markers",
            row=1,
            col=1,
        )
    figure.add_scatter(
        x=x,
        y=[p.customer_satisfaction for p in trend.points],
        name="CSAT",
        mode="lines+markers",
        row=2,
        col=1,
    )
    figure.add_bar(x=x, y=[p.complaint_count for p in trend.points], name="complaints", row=3, col=1)
    figure.add_scatter(
        x=x, y=[p.roi for p in trend.points], name="ROI", mode="lines+markers", row=3, col=1, secondary_y=True
    )
    figure.update_yaxes(tickformat=".0%", rangemode="tozero", row=1, col=1)
    figure.update_yaxes(range=[1, 5], row=2, col=1)
    figure.update_layout(**_layout(f"KPI trends per {trend.interval}", height=640))
    return figure


def tiers_chart(tiers: TiersOut) -> go.Figure:
    total = sum(t.customers for t in tiers.tiers)
    names = [t.tier for t in tiers.tiers]
    figure = go.Figure()
    figure.add_bar(
        name="share of customers",
        x=names,
        y=[t.customers / total if total else 0 for t in tiers.tiers],
        text=[f"{t.customers} customers" for t in tiers.tiers],
    )
    figure.add_bar(
        name="share of revenue",
        x=names,
        y=[t.revenue_share for t in tiers.tiers],
        text=[f"{t.revenue_share:.0%}" for t in tiers.tiers],
    )
    top = tiers.top_20_percent_revenue_share
    title = f"Value tiers (1 / 4 / 15 / 80): the top 20 % bring {top:.0%} of revenue"
    figure.update_layout(**_layout(title), barmode="group", yaxis=PERCENT, height=360)
    return figure


def quality_chart(review: DataQualityOut) -> go.Figure:
    dimensions = [("accuracy", review.accuracy), ("completeness", review.completeness)]
    dimensions += [("consistency", review.consistency), ("timeliness", review.timeliness)]
    figure = go.Figure(
        go.Bar(
            x=[f"{name} (x{d.weight})" for name, d in dimensions],
            y=[d.score or 0 for _, d in dimensions],
            text=[f"{d.score:.0%}" if d.score is not None else "n/a" for _, d in dimensions],
        )
    )
    score = f"{review.score:.0%}" if review.score is not None else "n/a"
    figure.update_layout(
        **_layout(f"Customer data quality: {score} of {review.customers} customers"),
        yaxis=PERCENT,
        height=340,
    )
    return figure


def figures(
    kpi: KpisOut, trend: TrendOut, tiers: TiersOut, journey: JourneyAnalytics | None, review: DataQualityOut
) -> dict[str, dict]:
    out: dict[str, go.Figure | None] = {
        "trend": trend_chart(trend),
        "tiers": tiers_chart(tiers),
        "quality": quality_chart(review),
    }
    if journey is not None:
        out |= {"journey": journey_graph(journey), "funnel": funnel(journey), "uplift": uplift_chart(journey)}
    return {name: json.loads(fig.to_json()) for name, fig in out.items() if fig is not None}


def _script_json(value: Any) -> str:
    """JSON safe inside <script type="application/json">: no '<' can close the element early."""
    return json.dumps(value, separators=(",", ":")).replace("<", "\\u003c")


def _latest_published(listed) -> str | None:
    published = [j for j in listed if j.published_version]
    return max(published, key=lambda j: j.updated_at).id if published else None


async def page(
    session: AsyncSession,
    settings: Settings,
    period: Period,
    interval: str,
    journey_id: str | None,
    *,
    now: datetime,
) -> str:
    listed = await journeys.list_all(session)
    chosen = journey_id or _latest_published(listed)

    async def journey_section(s: AsyncSession) -> JourneyAnalytics | None:
        return await campaigns.journey(s, chosen, period, settings) if chosen else None

    # The sections are independent: they run side by side on one snapshot, and the KPI cards come from
    # the trend's queries (the buckets cover the period).
    (kpi, trend), tiers, journey, review = await side_by_side.gather(
        session,
        lambda s: kpis.overview(s, period, interval, settings),
        segments.tiers,
        journey_section,
        lambda s: quality.review(s, settings, now=now, limit=0),
    )
    return _pages.get_template("report.html").render(
        kpi=kpi,
        journey=journey,
        tiers=tiers,
        review=review,
        journeys=listed,
        interval=interval,
        period=period,
        figures=_script_json(figures(kpi, trend, tiers, journey, review)),
        generated_at=now,
    )


def error_page(detail: Any) -> str:
    """The page for a request the report cannot answer (a bad ``from``, ``to``, ``interval`` or
    journey), naming the field as the API's JSON would: a browser shows this, not the JSON."""
    field, problem = (
        (detail.get("field"), detail.get("problem")) if isinstance(detail, dict) else (None, detail)
    )
    return _pages.get_template("report_error.html").render(field=field, problem=problem)
