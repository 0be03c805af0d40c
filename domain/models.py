"""Every table, imported in one place so Alembic and the tests see the whole schema."""

from domain.auth.models import ApiKey
from domain.customers.models import Customer
from domain.db import Base
from domain.email.models import Message, Template, TemplateVersion
from domain.events.models import Event, EventOutbox
from domain.journeys.models import Enrollment, Journey, JourneyListener, JourneyStep, JourneyVersion

__all__ = [
    "ApiKey",
    "Base",
    "Customer",
    "Enrollment",
    "Event",
    "EventOutbox",
    "Journey",
    "JourneyListener",
    "JourneyStep",
    "JourneyVersion",
    "Message",
    "Template",
    "TemplateVersion",
]
