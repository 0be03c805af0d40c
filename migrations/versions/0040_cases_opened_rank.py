"""cases: the priority rank a case opened with, so the queue's pages keep their order across a breach

A breach raises ``priority_rank``; a page of the queue after the first orders the cases as they stood
when the walk began (domain/cases/queue_cursor.py), which needs the rank from before a breach made
since. Existing rows get their current rank: one breached already was so before any walk begins.

Revision ID: 0040_cases_opened_rank
Revises: 0039_customer_user_aliases
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0040_cases_opened_rank"
down_revision: str | None = "0039_customer_user_aliases"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("opened_priority_rank", sa.SmallInteger(), nullable=True))
    op.execute("UPDATE cases SET opened_priority_rank = priority_rank")


def downgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("opened_priority_rank")
