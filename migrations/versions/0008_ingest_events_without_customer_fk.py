"""ingestion: events.customer_id without a foreign key

Checking it ran a lookup per stored event, the largest single cost of storing a batch on PostgreSQL.
Ingestion now locks the customers it attributes events to in the same statement (FOR KEY SHARE),
and erasure deletes a customer's events itself.

Revision ID: 0008_ingest
Revises: 0003_engine
Create Date: 2026-12-01 19:20:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008_ingest"
down_revision: str | None = "0003_engine"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_constraint("fk_events_customer_id_customers", type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_foreign_key(
            batch_op.f("fk_events_customer_id_customers"),
            "customers",
            ["customer_id"],
            ["id"],
            ondelete="CASCADE",
        )
