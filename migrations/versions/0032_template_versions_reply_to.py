"""template_versions: a template may set its own Reply-To

``JOURNEYS_MAIL_REPLY_TO`` set one Reply-To for every email; a template (a version of it, as its subject
and sender-facing content are) may now name its own mailbox, e.g. the support desk for a receipt.
Null: the global setting, or none.

Revision ID: 0032_template_versions_reply_to
Revises: 0031_read_indexes
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0032_template_versions_reply_to"
down_revision: str | None = "0031_read_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("template_versions") as batch:
        batch.add_column(sa.Column("reply_to", sa.String(length=400), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("template_versions") as batch:
        batch.drop_column("reply_to")
