"""Indexes the analytics queries need on other areas' tables (no tables of its own)."""

from __future__ import annotations

from sqlalchemy import Index, text

from domain.events.models import Event

# The data-quality review compares what each source said in its identify calls: a tenth of the events
# or fewer, which a scan of the whole events table would otherwise have to find.
IDENTIFY_CALLS = Index(
    "ix_events_identify_customer",
    Event.customer_id,
    postgresql_where=text("type = 'identify'"),
    sqlite_where=text("type = 'identify'"),
)
