"""customers: where a merged-away profile went, so the journeys it was in go on for the known customer

Revision ID: 0019_customer_merges
Revises: 0018_segments_newcomers
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import domain.db

revision: str = "0019_customer_merges"
down_revision: str | None = "0018_segments_newcomers"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "customer_merges",
        sa.Column("merged_id", big_id, autoincrement=False, nullable=False),
        sa.Column("customer_id", big_id, nullable=False),
        sa.Column("merged_at", domain.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_customer_merges_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("merged_id", name=op.f("pk_customer_merges")),
    )
    op.create_index(op.f("ix_customer_merges_customer_id"), "customer_merges", ["customer_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_customer_merges_customer_id"), table_name="customer_merges")
    op.drop_table("customer_merges")
