"""reads: indexes for the messages of a journey, the open stays of a segment, customers' traits

- ``GET /api/messages?journey_id=`` filters the ledger on ``journey_id`` and pages it by ``id``
  descending. Without an index PostgreSQL walked the primary key backwards past every other
  journey's and broadcast's sends (or read the whole ledger for a journey that sent nothing).
  ``(journey_id, id)`` makes a page a range read, ``before_id`` included; the journey analytics'
  ledger filter uses it too.
- ``GET /api/segments`` counts every segment's open stays. ``(segment_id) WHERE exited_at IS NULL``
  is the narrowest index that holds them (PostgreSQL deduplicates its equal keys: 0.9 MB at 127 000
  stays, against 6 MB for the unique (segment_id, customer_id) one), so each count is an index-only
  scan of it rather than a read of every stay, open or closed. A stay leaving changes nothing in
  it; a stay opening adds one entry.
- ``GET /api/customers?trait=key:value`` filters ``traits ->> key = value``, for any key: no
  expression index can hold keys not known ahead. A GIN index (``jsonb_path_ops``) of the traits
  holds every key and value, and the search adds a containment test it answers (the documents one of
  which a matching customer's traits contain), so a value no customer has is found missing in the
  index rather than by reading every customer. PostgreSQL only: SQLite has no index over a JSON
  document's keys and values. Updates that leave the traits as they were stay HOT.

Revision ID: 0031_read_indexes
Revises: 0030_customers_email_prefix
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0031_read_indexes"
down_revision: str | None = "0030_customers_email_prefix"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_messages_journey", "messages", ["journey_id", "id"])
    op.create_index(
        "ix_segment_memberships_open",
        "segment_memberships",
        ["segment_id"],
        sqlite_where=sa.text("exited_at IS NULL"),
        postgresql_where=sa.text("exited_at IS NULL"),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.create_index(
            "ix_customers_traits",
            "customers",
            ["traits"],
            postgresql_using="gin",
            postgresql_ops={"traits": "jsonb_path_ops"},
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_customers_traits", table_name="customers")
    op.drop_index("ix_segment_memberships_open", table_name="segment_memberships")
    op.drop_index("ix_messages_journey", table_name="messages")
