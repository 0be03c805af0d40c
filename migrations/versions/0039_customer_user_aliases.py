"""customer_user_aliases: the former userIds of a customer

An ``alias`` whose previousId was a userId renamed the profile (or merged it into another) and forgot
the old id: a call still sent under it started a second profile of the same person. The former ids are
kept here, and looked up when a userId names no profile itself.

Revision ID: 0039_customer_user_aliases
Revises: 0038_events_track_name_id
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import domain.db

revision: str = "0039_customer_user_aliases"
down_revision: str | None = "0038_events_track_name_id"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "customer_user_aliases",
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("created_at", domain.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_customer_user_aliases_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_customer_user_aliases")),
    )
    with op.batch_alter_table("customer_user_aliases", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_customer_user_aliases_customer_id"), ["customer_id"], unique=False
        )


def downgrade() -> None:
    op.drop_table("customer_user_aliases")
