"""analytics: a partial index on identify calls (the data-quality review compares sources)

Revision ID: 0012_analytics
Revises: 0008_ingest
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_analytics"
down_revision: str | None = "0008_ingest"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_events_identify_customer"
IDENTIFY = sa.text("type = 'identify'")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # Built without blocking ingestion: events is the busiest table.
        with op.get_context().autocommit_block():
            op.create_index(
                INDEX, "events", ["customer_id"], postgresql_where=IDENTIFY, postgresql_concurrently=True
            )
    else:
        op.create_index(INDEX, "events", ["customer_id"], sqlite_where=IDENTIFY)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        with op.get_context().autocommit_block():
            op.drop_index(INDEX, table_name="events", postgresql_concurrently=True)
    else:
        op.drop_index(INDEX, table_name="events")
