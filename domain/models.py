"""Every table, imported in one place so Alembic and the tests see the whole schema."""

from domain.auth.models import ApiKey
from domain.customers.models import Customer
from domain.db import Base
from domain.email.models import Message, Template, TemplateVersion
from domain.events.models import Event, EventOutbox
from domain.journeys.models import Enrollment, Journey, JourneyVersion
from domain.segments.models import (
    CustomerScore,
    Segment,
    SegmentMembership,
    SegmentRefreshState,
    SegmentVersion,
)

__all__ = [
    "ApiKey",
    "Base",
    "Customer",
    "CustomerScore",
    "Enrollment",
    "Event",
    "EventOutbox",
    "Journey",
    "JourneyVersion",
    "Message",
    "Segment",
    "SegmentMembership",
    "SegmentRefreshState",
    "SegmentVersion",
    "Template",
    "TemplateVersion",
]
