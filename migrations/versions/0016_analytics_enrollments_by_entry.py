"""analytics: enrollments by when they were entered (the KPIs and trends count them per period)

Revision ID: 0016_analytics
Revises: 0015_segments
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0016_analytics"
down_revision: str | None = "0015_segments"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_enrollments_entered_at"
CARRIED = ["journey_id", "version", "customer_id", "workflow_id"]


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # Built without blocking the journeys that enroll customers meanwhile.
        with op.get_context().autocommit_block():
            op.create_index(
                INDEX, "enrollments", ["entered_at"], postgresql_include=CARRIED, postgresql_concurrently=True
            )
    else:
        op.create_index(INDEX, "enrollments", ["entered_at"])


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        with op.get_context().autocommit_block():
            op.drop_index(INDEX, table_name="enrollments", postgresql_concurrently=True)
    else:
        op.drop_index(INDEX, table_name="enrollments")
