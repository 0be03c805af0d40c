"""segments: a queue of new customers for the refresher (checked once against the segments a blank
profile matches, instead of every pass for a minute after their creation)

Revision ID: 0018_segments_newcomers
Revises: 0017_segments_rechecks
"""

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

import domain.db

revision: str = "0018_segments_newcomers"
down_revision: str | None = "0017_segments_rechecks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "segment_newcomers",
        sa.Column("customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("queued_at", domain.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_segment_newcomers")),
    )
    # Customers created in the last minute were the previous refresher's newcomers: queue them once.
    customers = sa.table("customers", sa.column("id"), sa.column("created_at", domain.db.UTCDateTime()))
    newcomers = sa.table("segment_newcomers", sa.column("customer_id"), sa.column("queued_at"))
    recent = sa.select(customers.c.id, customers.c.created_at).where(
        customers.c.created_at >= datetime.now(UTC) - timedelta(minutes=1)
    )
    op.execute(newcomers.insert().from_select(["customer_id", "queued_at"], recent))


def downgrade() -> None:
    op.drop_table("segment_newcomers")
