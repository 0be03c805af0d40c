"""segments: a queue of sends for the window-edge pass (segments on received messages)

The pass read messages by their ``sent_at`` since its last run; a send whose transaction committed
after a pass had read the table fell behind that window for good. Sends are now queued in the
transaction that records them. Messages sent since the last pass (with an hour's margin: entering a
segment twice is entering it once) are queued here, so none sent around the upgrade is missed.

Revision ID: 0024_segments_new_sends
Revises: 0023_erasure_already_gone
"""

from collections.abc import Sequence
from datetime import timedelta

import sqlalchemy as sa
from alembic import op

import domain.db

revision: str = "0024_segments_new_sends"
down_revision: str | None = "0023_erasure_already_gone"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "segment_new_sends",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("queued_at", domain.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_segment_new_sends")),
        sqlite_autoincrement=True,
    )
    state = sa.table("segment_refresh_state", sa.column("name"), sa.column("ran_at", domain.db.UTCDateTime()))
    ran_at = op.get_bind().scalar(sa.select(state.c.ran_at).where(state.c.name == "window_edges"))
    if ran_at is None:  # the first pass rebuilds every such segment anyway
        return
    messages = sa.table(
        "messages",
        sa.column("customer_id"),
        sa.column("status"),
        sa.column("sent_at", domain.db.UTCDateTime()),
        sa.column("created_at", domain.db.UTCDateTime()),
    )
    sends = sa.table("segment_new_sends", sa.column("customer_id"), sa.column("queued_at"))
    recent = (
        sa.select(messages.c.customer_id, sa.func.max(messages.c.created_at))
        .where(
            messages.c.customer_id.is_not(None),
            messages.c.status == "sent",
            sa.func.coalesce(messages.c.sent_at, messages.c.created_at) >= ran_at - timedelta(hours=1),
        )
        .group_by(messages.c.customer_id)
    )
    op.execute(sends.insert().from_select(["customer_id", "queued_at"], recent))


def downgrade() -> None:
    op.drop_table("segment_new_sends")
