"""What the analytics endpoints answer. Rates are 0-1 and null when their denominator is 0."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from domain.segments.schemas import TiersOut


class PeriodOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    start: datetime = Field(serialization_alias="from", description="Included.")
    end: datetime = Field(serialization_alias="to", description="Excluded.")


# -- KPIs ------------------------------------------------------------------------------------------------
class Satisfaction(BaseModel):
    value: float | None = Field(description="Mean CSAT (1-5) of the ratings given in the period.")
    ratings: int


class Retention(BaseModel):
    value: float | None = Field(description="retained / active_at_start.")
    active_at_start: int = Field(description="Customers with a purchase in the N days before `from`.")
    retained: int = Field(description="Of those, customers with a purchase in the N days before `to`.")


class Growth(BaseModel):
    value: float | None = Field(description="new_customers / customers_at_start.")
    customers_at_start: int = Field(description="Known customers (with a userId) created before `from`.")
    new_customers: int = Field(description="Known customers created in the period.")


class Conversion(BaseModel):
    value: float | None = Field(description="converted / recipients.")
    recipients: int = Field(
        description="Enrollments entered in the period, in journeys with a goal, that "
        "received at least one email."
    )
    converted: int = Field(description="Of those, enrollments whose goal came within the conversion window.")


class Complaints(BaseModel):
    value: int = Field(description="Cases opened in the period whose reason names a complaint.")
    cases_opened: int


class Roi(BaseModel):
    value: float | None = Field(description="attributed_revenue / cost.")
    attributed_revenue: float
    attributed_purchases: int
    messages_sent: int = Field(description="Marketing emails sent in the period.")
    cost: float = Field(description="messages_sent x cost per message.")


class IndexComponent(BaseModel):
    kpi: str
    normalised: float | None = Field(description="The KPI mapped onto 0-1 (null: not measurable).")
    weight: float


class EffectivenessIndex(BaseModel):
    value: float | None = Field(
        description="Sum of weight x normalised KPI over the measurable KPIs, divided by their weights."
    )
    components: list[IndexComponent]


class KpisOut(PeriodOut):
    customer_satisfaction: Satisfaction
    retention_rate: Retention
    customer_growth_rate: Growth
    marketing_conversion_rate: Conversion
    complaint_count: Complaints
    roi: Roi
    crm_effectiveness_index: EffectivenessIndex


class TrendPoint(PeriodOut):
    customer_satisfaction: float | None
    retention_rate: float | None
    customer_growth_rate: float | None
    marketing_conversion_rate: float | None
    complaint_count: int
    roi: float | None
    crm_effectiveness_index: float | None


class TrendOut(PeriodOut):
    interval: str
    points: list[TrendPoint]


# -- campaigns -------------------------------------------------------------------------------------------
class MessageStats(BaseModel):
    sent: int = Field(description="Ledger rows the SMTP relay accepted (status sent).")
    delivered: int = Field(description="Sent and not bounced.")
    bounced: int = Field(description="Messages credited with a bounce of the address (sent or failed).")
    opened: int = Field(description="Messages with at least one Email Opened event.")
    clicked: int = Field(description="Messages with at least one Email Link Clicked event.")
    unsubscribed: int = Field(description="Messages credited with an unsubscribe (last touch).")
    failed: int = 0
    skipped: int = Field(0, description="Not sent: no address, suppressed, unsubscribed.")
    open_rate: float | None = Field(None, description="opened / delivered.")
    click_rate: float | None = Field(None, description="clicked / delivered.")
    click_to_open_rate: float | None = Field(None, description="clicked / opened.")
    unsubscribe_rate: float | None = Field(None, description="unsubscribed / delivered.")


class NodeStats(MessageStats):
    node_id: str
    type: str
    entered: int = Field(description="Enrollments whose first visit to the node began in the period.")
    converted: int | None = Field(
        description="Of those, enrollments whose goal came within the window after the visit (null: no goal)."
    )
    conversion_rate: float | None = Field(description="converted / entered.")


class Link(BaseModel):
    source: str
    target: str = Field(
        description="A node id, or one of the ends: holdout, goal, exited, failed, waiting, left."
    )
    count: int


class GroupConversion(BaseModel):
    group: str = Field(description="holdout, or path:N for the Nth path of the split.")
    entered: int
    converted: int
    rate: float | None
    interval: tuple[float, float] | None = Field(description="95 % Wilson interval of the rate.")


class Uplift(BaseModel):
    split_node: str
    treatment: GroupConversion = Field(description="Every path of the split together.")
    holdout: GroupConversion
    paths: list[GroupConversion]
    difference: float | None = Field(description="Treatment rate minus holdout rate.")
    interval: tuple[float, float] | None = Field(
        description="95 % Newcombe (hybrid Wilson score) interval of the difference."
    )
    detected: bool = Field(description="The interval lies wholly above or below 0.")


class JourneyAnalytics(BaseModel):
    journey_id: str
    name: str
    start: datetime | None = Field(serialization_alias="from")
    end: datetime | None = Field(serialization_alias="to")
    conversion_window_days: float
    goal: dict | None
    enrolled: int
    converted: int | None
    conversion_rate: float | None
    nodes: list[NodeStats]
    links: list[Link]
    uplift: list[Uplift]


class BroadcastAnalytics(MessageStats):
    broadcast_id: str
    name: str
    kind: str = Field(
        description="marketing, or operational (a notice to everyone: its mail is transactional, left out "
        "of the marketing KPIs and ROI)."
    )
    template_id: str
    status: str
    converted: int = Field(
        description="Sent messages whose recipient purchased within the attribution window."
    )
    conversion_rate: float | None = Field(description="converted / delivered.")
    attribution_window_days: float


class TemplateStats(MessageStats):
    template_id: str


class TemplatesOut(PeriodOut):
    templates: list[TemplateStats]


# -- data quality ----------------------------------------------------------------------------------------
class Finding(BaseModel):
    dimension: str = Field(description="accuracy, completeness, consistency or timeliness.")
    customer_id: int
    user_id: str | None
    field: str
    problem: str


class Dimension(BaseModel):
    score: float | None = Field(description="0-1; null without customers.")
    weight: float
    checked: int = Field(description="What the score divides by: customers, or customers x required traits.")
    passed: int
    findings: int = Field(description="Problems found (a customer may have several).")


class DataQualityOut(BaseModel):
    score: float | None = Field(
        description="0.4 accuracy + 0.3 completeness + 0.2 consistency + 0.1 timeliness."
    )
    customers: int = Field(description="Known customers (with a userId) reviewed.")
    accuracy: Dimension
    completeness: Dimension
    consistency: Dimension
    timeliness: Dimension
    required_traits: list[str]
    timeliness_days: int
    findings: list[Finding] = Field(
        description="The first findings of each dimension (see `limit`); the CSV export has them all."
    )


class ReportInputs(BaseModel):
    """Everything the HTML report draws."""

    kpis: KpisOut
    trend: TrendOut
    tiers: TiersOut
    journey: JourneyAnalytics | None
    quality: DataQualityOut
