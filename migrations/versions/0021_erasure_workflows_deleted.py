"""customer_erasures: how many of the person's workflow histories were deleted from Temporal

Revision ID: 0021_erasure_workflows_deleted
Revises: 0020_sqlite_ids_never_reused
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021_erasure_workflows_deleted"
down_revision: str | None = "0020_sqlite_ids_never_reused"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("customer_erasures") as batch_op:
        batch_op.add_column(sa.Column("workflows_deleted", sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("customer_erasures") as batch_op:
        batch_op.drop_column("workflows_deleted")
