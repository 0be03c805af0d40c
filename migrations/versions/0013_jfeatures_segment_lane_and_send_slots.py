"""journeys: a routing lane per outbox row, and the per-journey send-rate slot clock

Segment refreshes can queue thousands of Segment Entered events at once; routing them in their own
lane (own batch size and concurrency) keeps ordinary events from waiting behind them. The slot table
holds, per journey, the moment each rate-limited send may go (one row per send key, so a retried
plan takes no second slot).

Revision ID: 0013_jfeatures
Revises: 0012_analytics
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import domain.db

revision: str = "0013_jfeatures"
down_revision: str | None = "0012_analytics"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("event_outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lane", sa.String(length=16), server_default="events", nullable=False))
        batch_op.create_index("ix_event_outbox_lane_event", ["lane", "event_id"], unique=False)
    op.create_table(
        "journey_send_slots",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("journey_id", sa.String(length=64), nullable=False),
        sa.Column("send_key", sa.String(length=512), nullable=False),
        sa.Column("slot_at", domain.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["journey_id"],
            ["journeys.id"],
            name=op.f("fk_journey_send_slots_journey_id_journeys"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_journey_send_slots")),
        sa.UniqueConstraint("send_key", name=op.f("uq_journey_send_slots_send_key")),
    )
    op.create_index("ix_journey_send_slots_journey_slot", "journey_send_slots", ["journey_id", "slot_at"])


def downgrade() -> None:
    op.drop_index("ix_journey_send_slots_journey_slot", table_name="journey_send_slots")
    op.drop_table("journey_send_slots")
    with op.batch_alter_table("event_outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_event_outbox_lane_event")
        batch_op.drop_column("lane")
