"""suppressions: an erased customer's address is kept only as a digest

Erasure left the suppression list naming the person's address in plain text. It now keeps
``sha256:<hex>`` of the address instead (domain/subscriptions/addresses.py), which still suppresses it.
Here the entries of customers erased before are hashed: those whose address digest an erasure record
holds (``customer_erasures.email_sha256``, the address the profile had then), their detail (which may
quote the address) dropped. Not reversible: a downgrade leaves the digests.

Revision ID: 0029_suppressions_erased_hashed
Revises: 0028_segments_refresh_error
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from domain.db import sql_sha256_hex

HASHED = "sha256:"  # as domain/subscriptions/addresses.py writes it

revision: str = "0029_suppressions_erased_hashed"
down_revision: str | None = "0028_segments_refresh_error"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    suppressions = sa.table("suppressions", sa.column("address", sa.String), sa.column("detail", sa.Text))
    erasures = sa.table("customer_erasures", sa.column("email_sha256", sa.String))
    digest = sql_sha256_hex(suppressions.c.address, op.get_bind().dialect.name)
    op.execute(
        suppressions.update()
        .where(
            ~suppressions.c.address.startswith(HASHED),
            digest.in_(sa.select(erasures.c.email_sha256).where(erasures.c.email_sha256.is_not(None))),
        )
        .values(address=sa.literal(HASHED, sa.String) + digest, detail=None)
    )


def downgrade() -> None:
    pass  # a digest cannot be turned back into the address
