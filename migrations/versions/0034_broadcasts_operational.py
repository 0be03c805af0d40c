"""broadcasts: an operational kind, with the reason it is sent and the key that sent it

An operational broadcast (a terms-of-service change, a security incident) goes to every customer past
marketing unsubscribes and subscription groups, never past bounces and complaints; it says why, and
which key asked for it, for the audit. Broadcasts stored before are marketing.

Revision ID: 0034_broadcasts_operational
Revises: 0033_customers_email_sha256
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0034_broadcasts_operational"
down_revision: str | None = "0033_customers_email_sha256"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("broadcasts") as batch:
        batch.add_column(sa.Column("kind", sa.String(length=16), server_default="marketing", nullable=False))
        batch.add_column(sa.Column("reason", sa.String(length=500), nullable=True))
        batch.add_column(
            sa.Column(
                "created_by_key_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
            )
        )
        batch.create_foreign_key(
            op.f("fk_broadcasts_created_by_key_id_api_keys"),
            "api_keys",
            ["created_by_key_id"],
            ["id"],
            ondelete="SET NULL",
        )


def downgrade() -> None:
    with op.batch_alter_table("broadcasts") as batch:
        batch.drop_constraint(op.f("fk_broadcasts_created_by_key_id_api_keys"), type_="foreignkey")
        batch.drop_column("created_by_key_id")
        batch.drop_column("reason")
        batch.drop_column("kind")
