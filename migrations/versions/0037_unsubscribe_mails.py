"""unsubscribe_mails: the mails to the unsubscribe mailbox that were acted on

A provider's retry of a mail (the same Message-ID) that arrived after the person re-subscribed
unsubscribed them again: nothing recorded that the mail had been acted on. Each mail acted on is now
recorded by a digest of its Message-ID (or of the message) and its token, inserted in the transaction
that unsubscribes, so a repeat is only acknowledged. The digest names no one: an erasure has nothing
to find here.

Revision ID: 0037_unsubscribe_mails
Revises: 0036_journey_steps_path
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import domain.db

revision: str = "0037_unsubscribe_mails"
down_revision: str | None = "0036_journey_steps_path"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "unsubscribe_mails",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("processed_at", domain.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_unsubscribe_mails")),
    )


def downgrade() -> None:
    op.drop_table("unsubscribe_mails")
