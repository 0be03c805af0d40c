"""reads: an index for the ledger's messages of a journey

``GET /api/messages?journey_id=`` filters the ledger on ``journey_id`` and pages it by ``id``
descending. Without an index PostgreSQL walked the primary key backwards past every other journey's
and broadcast's sends (or read the whole ledger for a journey that sent nothing). ``(journey_id, id)``
makes a page a range read, ``before_id`` included; the journey analytics' ledger filter uses it too.

Revision ID: 0031_read_indexes
Revises: 0030_customers_email_prefix
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0031_read_indexes"
down_revision: str | None = "0030_customers_email_prefix"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_messages_journey", "messages", ["journey_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_messages_journey", table_name="messages")
