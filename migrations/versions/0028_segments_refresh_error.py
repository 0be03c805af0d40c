"""segments: a background pass that cannot evaluate a segment says so on the segment

It was only logged, so a stale segment looked fresh in the API.

Revision ID: 0028_segments_refresh_error
Revises: 0027_enrollments_superseded
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import domain.db

revision: str = "0028_segments_refresh_error"
down_revision: str | None = "0027_enrollments_superseded"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("segments") as batch:
        batch.add_column(sa.Column("refresh_failed_at", domain.db.UTCDateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("refresh_error", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("segments") as batch:
        batch.drop_column("refresh_error")
        batch.drop_column("refresh_failed_at")
