"""loyalty_folded_keys: the idempotency keys of a merged-away visitor's ledger

A visitor merged into a customer who has an account brings only their open points, as new entries;
their ledger is deleted with their profile. The keys of its entries are kept here, so a journey step
retried after the merge finds its award done instead of awarding it again.

Revision ID: 0022_loyalty_folded_keys
Revises: 0021_erasure_workflows_deleted
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import domain.db

revision: str = "0022_loyalty_folded_keys"
down_revision: str | None = "0021_erasure_workflows_deleted"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "loyalty_folded_keys",
        sa.Column("idempotency_key", sa.String(length=400), nullable=False),
        sa.Column("customer_id", big_id, nullable=False),
        sa.Column("folded_at", domain.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_loyalty_folded_keys_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("idempotency_key", name=op.f("pk_loyalty_folded_keys")),
    )
    op.create_index(op.f("ix_loyalty_folded_keys_customer_id"), "loyalty_folded_keys", ["customer_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_loyalty_folded_keys_customer_id"), table_name="loyalty_folded_keys")
    op.drop_table("loyalty_folded_keys")
