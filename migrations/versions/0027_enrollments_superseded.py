"""enrollments: an enrollment a profile merge ended in favour of the same person's other one

A visitor and the known customer they log in as could both be inside one journey whose re-entry policy
lets a person in once (or once per key, or once at a time); the merge kept both running and the person
got each later email twice. The merge now ends the later-entered of the two (status "exited") and
names the enrollment it kept in ``superseded_by``.

Revision ID: 0027_enrollments_superseded
Revises: 0026_cap_reservations
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0027_enrollments_superseded"
down_revision: str | None = "0026_cap_reservations"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("enrollments") as batch:
        batch.add_column(sa.Column("superseded_by", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("enrollments") as batch:
        batch.drop_column("superseded_by")
