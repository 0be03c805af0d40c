"""segments: customers to re-evaluate without a new event of theirs (profile merges, journey trait updates)

Revision ID: 0017_segments_rechecks
Revises: 0016_analytics
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import domain.db

revision: str = "0017_segments_rechecks"
down_revision: str | None = "0016_analytics"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "segment_rechecks",
        sa.Column("customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("queued_at", domain.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_segment_rechecks")),
    )


def downgrade() -> None:
    op.drop_table("segment_rechecks")
