"""customers: an unsubscribe from all marketing is kept on the person

It was kept only as a suppression of the address they had then, so a customer who changed address
(or had none) got marketing again. Customers whose current address is suppressed as unsubscribed are
marked as unsubscribed from all, as of that suppression.

Revision ID: 0025_customers_unsubscribed_all
Revises: 0024_segments_new_sends
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import domain.db

revision: str = "0025_customers_unsubscribed_all"
down_revision: str | None = "0024_segments_new_sends"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("customers") as batch:
        batch.add_column(
            sa.Column("unsubscribed_all_at", domain.db.UTCDateTime(timezone=True), nullable=True)
        )
    customers = sa.table(
        "customers",
        sa.column("email"),
        sa.column("unsubscribed_all_at", domain.db.UTCDateTime()),
    )
    suppressions = sa.table(
        "suppressions", sa.column("address"), sa.column("reason"), sa.column("created_at")
    )
    since = (
        sa.select(suppressions.c.created_at)
        .where(suppressions.c.address == customers.c.email, suppressions.c.reason == "unsubscribed")
        .scalar_subquery()
    )
    op.execute(customers.update().where(since.is_not(None)).values(unsubscribed_all_at=since))


def downgrade() -> None:
    with op.batch_alter_table("customers") as batch:
        batch.drop_column("unsubscribed_all_at")
