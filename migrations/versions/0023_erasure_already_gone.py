"""customer_erasures: the person's workflows Temporal no longer knew when they were erased

An erasure repeated after a partial failure finds the histories its first attempt deleted gone; they
are counted here, so the record still accounts for every one.

Revision ID: 0023_erasure_already_gone
Revises: 0022_loyalty_folded_keys
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023_erasure_already_gone"
down_revision: str | None = "0022_loyalty_folded_keys"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("customer_erasures") as batch_op:
        batch_op.add_column(
            sa.Column("workflows_already_gone", sa.Integer(), server_default="0", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("customer_erasures") as batch_op:
        batch_op.drop_column("workflows_already_gone")
