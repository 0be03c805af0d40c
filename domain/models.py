"""Every table, imported in one place so Alembic and the tests see the whole schema."""

from sqlalchemy import Integer

import domain.analytics.models  # noqa: F401  (indexes on other areas' tables)
from domain.auth.models import ApiKey
from domain.broadcasts.models import Broadcast
from domain.cases.models import Agent, Case, CaseNote, CaseOutbox, SlaPolicy, Team, TeamMember
from domain.customers.models import (
    Customer,
    CustomerAlias,
    CustomerErasure,
    CustomerMerge,
    CustomerUserAlias,
)
from domain.db import Base
from domain.email.models import Message, Template, TemplateVersion
from domain.events.models import Event, EventOutbox
from domain.journeys.models import (
    CapReservation,
    Enrollment,
    Journey,
    JourneyListener,
    JourneySendSlot,
    JourneyStep,
    JourneyVersion,
)
from domain.loyalty.models import (
    LoyaltyAccount,
    LoyaltyCursor,
    LoyaltyEntry,
    LoyaltyFoldedKey,
    LoyaltyLot,
    LoyaltyProgram,
    LoyaltyTierChange,
)
from domain.segments.models import (
    CustomerScore,
    Segment,
    SegmentMembership,
    SegmentRefreshState,
    SegmentVersion,
)
from domain.subscriptions.models import Subscription, SubscriptionGroup, Suppression, UnsubscribeMail

# An id, once given, is never given again, on SQLite as on PostgreSQL (whose identities never reuse):
# running journeys, merge redirects, workflow ids and agents' links keep ids of rows that may be
# deleted, and SQLite would hand a deleted highest id to the next row unless the table is AUTOINCREMENT
# (migration 0020).
for _table in Base.metadata.tables.values():
    _key = list(_table.primary_key.columns)
    if (
        len(_key) == 1
        and isinstance(_key[0].type, Integer)
        and _key[0].autoincrement == "auto"
        and not _key[0].foreign_keys
    ):
        _table.dialect_options["sqlite"]["autoincrement"] = True

__all__ = [
    "Agent",
    "ApiKey",
    "Base",
    "Broadcast",
    "CapReservation",
    "Case",
    "CaseNote",
    "CaseOutbox",
    "Customer",
    "CustomerAlias",
    "CustomerErasure",
    "CustomerMerge",
    "CustomerScore",
    "CustomerUserAlias",
    "Enrollment",
    "Event",
    "EventOutbox",
    "Journey",
    "JourneyListener",
    "JourneySendSlot",
    "JourneyStep",
    "JourneyVersion",
    "LoyaltyAccount",
    "LoyaltyCursor",
    "LoyaltyEntry",
    "LoyaltyFoldedKey",
    "LoyaltyLot",
    "LoyaltyProgram",
    "LoyaltyTierChange",
    "Message",
    "Segment",
    "SegmentMembership",
    "SegmentRefreshState",
    "SegmentVersion",
    "SlaPolicy",
    "Subscription",
    "SubscriptionGroup",
    "Suppression",
    "Team",
    "TeamMember",
    "Template",
    "TemplateVersion",
    "UnsubscribeMail",
]
