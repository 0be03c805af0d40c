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

On PostgreSQL the three are built with CREATE INDEX CONCURRENTLY, outside the run's transaction: a
plain CREATE INDEX holds a SHARE lock on the table until the whole run commits, so every insert or
update of customers, messages and stays waits for the build (0.17 s at 200 000 customers here,
minutes on a large base) and for every migration after it. A concurrent build waits for the
transactions open on the table when it starts instead, and lets writes go on meanwhile.

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
    if op.get_bind().dialect.name != "postgresql":
        op.create_index("ix_messages_journey", "messages", ["journey_id", "id"])
        op.create_index(
            "ix_segment_memberships_open",
            "segment_memberships",
            ["segment_id"],
            sqlite_where=sa.text("exited_at IS NULL"),
        )
        return
    # CONCURRENTLY cannot run inside a transaction: the block commits the migrations run before it
    # (their alembic_version row with them) and builds each index in autocommit. An interrupted build
    # leaves an INVALID index of that name behind while alembic_version still says 0030, so each
    # build first drops any index of its name (a valid one, too, is simply rebuilt).
    with op.get_context().autocommit_block():
        for name, table, build in (
            ("ix_messages_journey", "messages", {"columns": ["journey_id", "id"]}),
            (
                "ix_segment_memberships_open",
                "segment_memberships",
                {"columns": ["segment_id"], "postgresql_where": sa.text("exited_at IS NULL")},
            ),
            (
                "ix_customers_traits",
                "customers",
                {
                    "columns": ["traits"],
                    "postgresql_using": "gin",
                    "postgresql_ops": {"traits": "jsonb_path_ops"},
                },
            ),
        ):
            op.drop_index(name, table_name=table, if_exists=True, postgresql_concurrently=True)
            op.create_index(name, table, build.pop("columns"), postgresql_concurrently=True, **build)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        op.drop_index("ix_segment_memberships_open", table_name="segment_memberships")
        op.drop_index("ix_messages_journey", table_name="messages")
        return
    with op.get_context().autocommit_block():
        for name, table in (
            ("ix_customers_traits", "customers"),
            ("ix_segment_memberships_open", "segment_memberships"),
            ("ix_messages_journey", "messages"),
        ):
            op.drop_index(name, table_name=table, if_exists=True, postgresql_concurrently=True)
