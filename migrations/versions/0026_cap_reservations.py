"""journeys: frequency-cap reservations, taken by the send plan in the transaction that counts

The cap was check-then-send: a plan counted the customer's recent sends, and the send recorded its
ledger row later, so two journeys planning sends to one customer at once both passed a full cap. The
plan now takes a reservation (one row per send key) with the customer locked; concurrent plans count
it until the send's ledger row exists.

Revision ID: 0026_cap_reservations
Revises: 0025_customers_unsubscribed_all
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import domain.db

revision: str = "0026_cap_reservations"
down_revision: str | None = "0025_customers_unsubscribed_all"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "cap_reservations",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("send_key", sa.String(length=512), nullable=False),
        sa.Column("customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("reserved_at", domain.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_cap_reservations_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cap_reservations")),
        sa.UniqueConstraint("send_key", name=op.f("uq_cap_reservations_send_key")),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_cap_reservations_customer_reserved", "cap_reservations", ["customer_id", "reserved_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_cap_reservations_customer_reserved", table_name="cap_reservations")
    op.drop_table("cap_reservations")
