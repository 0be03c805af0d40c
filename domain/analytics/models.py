"""Indexes the analytics queries need on other areas' tables (no tables of its own)."""

from __future__ import annotations

from sqlalchemy import Index, text

from domain.events.models import Event
from domain.journeys.models import Enrollment

# The data-quality review compares what each source said in its identify calls: a tenth of the events
# or fewer, which a scan of the whole events table would otherwise have to find.
IDENTIFY_CALLS = Index(
    "ix_events_identify_customer",
    Event.customer_id,
    postgresql_where=text("type = 'identify'"),
    sqlite_where=text("type = 'identify'"),
)

# The KPIs and their trends count enrollments by when they were entered (conversion: which journey
# versions, and whose customer got an email); carrying those columns lets PostgreSQL answer from the
# index alone instead of scanning every enrollment. Its columns never change, so updates stay HOT.
ENROLLMENTS_BY_ENTRY = Index(
    "ix_enrollments_entered_at",
    Enrollment.entered_at,
    postgresql_include=["journey_id", "version", "customer_id", "workflow_id"],
)
