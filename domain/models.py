"""Every table, imported in one place so Alembic and the tests see the whole schema."""

from domain.auth.models import ApiKey
from domain.broadcasts.models import Broadcast
from domain.customers.models import Customer
from domain.db import Base
from domain.email.models import Message, Template, TemplateVersion
from domain.events.models import Event, EventOutbox
from domain.journeys.models import Enrollment, Journey, JourneyVersion
from domain.subscriptions.models import Subscription, SubscriptionGroup, Suppression

__all__ = [
    "ApiKey",
    "Base",
    "Broadcast",
    "Customer",
    "Enrollment",
    "Event",
    "EventOutbox",
    "Journey",
    "JourneyVersion",
    "Message",
    "Subscription",
    "SubscriptionGroup",
    "Suppression",
    "Template",
    "TemplateVersion",
]
