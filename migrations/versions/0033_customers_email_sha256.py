"""customers: the sha256 of the email, so segment conditions recognise an erased person's address

An erased person's suppression entry keeps only ``sha256:<hex>`` of the address (0029). The send-time
check hashes the one address it asks about; segment ``subscription`` conditions, over every customer,
would have to hash every address at each evaluation (1.6 times slower on PostgreSQL, 3.5 on SQLite,
once the list holds one digest). ``customers.email_sha256`` keeps the first 16 bytes of the digest
(enough to tell addresses apart; 64 hex digits grew the table by half at 200 000 customers, these by
14 %), written with the email. Two partial indexes let an evaluation find, once, the few customers at
such an address (the digest entries of the list, then the customers with each digest) instead of
comparing every customer's digest with the list: ``ix_suppressions_digests`` holds the digest entries
only, and ``ix_customers_email_sha256`` the digests of customers with an address (ingestion's profiles
without one add no entry; one with an address already writes ``ix_customers_email``'s).

Existing rows are filled in batches of ids. On PostgreSQL each batch commits on its own (outside the
run's transaction, as 0031 builds its indexes), so no batch holds more than its rows' locks for long
and ingestion goes on meanwhile, and the indexes are built CONCURRENTLY after it, as 0031 builds its
own; an interrupted run starts again where it stopped (only rows without a digest are filled, the
column is added only if missing, an index left invalid is built again). The backfill writes a new
version of every customer with an address: a VACUUM (autovacuum's, or one by hand) after it lets the
table reuse the old ones' space. Workers of an earlier release write no digest: replace them right
after migrating. The customers whose digest is on the list now fail
``subscription`` conditions that they passed before, so they are queued for the segment refresher's
next pass (``segment_rechecks``), which re-evaluates them.

Revision ID: 0033_customers_email_sha256
Revises: 0032_template_versions_reply_to
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from domain.db import UTCDateTime, sql_sha256_prefix, utcnow

revision: str = "0033_customers_email_sha256"
down_revision: str | None = "0032_template_versions_reply_to"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 10_000  # customer ids per UPDATE
HASHED = "sha256:"  # as domain/subscriptions/addresses.py writes it

customers = sa.table(
    "customers",
    sa.column("id", sa.BigInteger),
    sa.column("email", sa.String),
    sa.column("email_sha256", sa.LargeBinary),
)
suppressions = sa.table("suppressions", sa.column("address", sa.String))


DIGEST_ENTRIES = f"substr(address, 1, {len(HASHED)}) = '{HASHED}'"  # as addresses.py has it
# As domain/segments/repository.erased_address_customers asks, so the planners match the predicates.
INDEXES = (
    ("ix_customers_email_sha256", "customers", "email_sha256", "email_sha256 IS NOT NULL"),
    ("ix_suppressions_digests", "suppressions", "address", DIGEST_ENTRIES),
)


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        op.add_column("customers", sa.Column("email_sha256", sa.LargeBinary(length=16), nullable=True))
        _backfill(bind)
        for name, table, column, where in INDEXES:
            op.create_index(name, table, [column], sqlite_where=sa.text(where))
        _queue_rechecks(bind)
        return
    op.execute("ALTER TABLE customers ADD COLUMN IF NOT EXISTS email_sha256 BYTEA")
    with op.get_context().autocommit_block():
        _backfill(bind)
        for name, table, column, where in INDEXES:
            # An interrupted build leaves an INVALID index of the name: dropped and built again.
            op.drop_index(name, table_name=table, if_exists=True, postgresql_concurrently=True)
            op.create_index(
                name, table, [column], postgresql_where=sa.text(where), postgresql_concurrently=True
            )
    _queue_rechecks(bind)


def _backfill(bind) -> None:
    digest = sql_sha256_prefix(customers.c.email, bind.dialect.name)
    last = bind.scalar(sa.select(sa.func.max(customers.c.id))) or 0
    for low in range(0, last, BATCH):
        bind.execute(
            customers.update()
            .where(
                customers.c.id > low,
                customers.c.id <= low + BATCH,
                customers.c.email.is_not(None),
                customers.c.email != "",
                customers.c.email_sha256.is_(None),
            )
            .values(email_sha256=digest)
        )


def _queue_rechecks(bind) -> None:
    # The refresher takes rechecks as it takes customers merged or changed by a journey: all segments.
    # SQLite cannot turn hex into bytes, so the digest entries are read and converted here.
    entries = bind.scalars(sa.select(suppressions.c.address).where(sa.text(DIGEST_ENTRIES))).all()
    digests = sorted({d for d in map(_stored, entries) if d})
    queue = sa.text(
        "INSERT INTO segment_rechecks (customer_id, queued_at)"
        " SELECT id, :now FROM customers WHERE email_sha256 IN :digests"
        " ON CONFLICT (customer_id) DO NOTHING"
    ).bindparams(
        sa.bindparam("now", utcnow(), type_=UTCDateTime()),
        sa.bindparam("digests", expanding=True, type_=sa.LargeBinary()),
    )
    for low in range(0, len(digests), BATCH):
        bind.execute(queue, {"digests": digests[low : low + BATCH]})


def _stored(entry: str) -> bytes | None:
    """What email_sha256 holds for a digest entry's address (as addresses.stored_digest)."""
    try:
        return bytes.fromhex(entry.removeprefix(HASHED))[:16]
    except ValueError:
        return None


def downgrade() -> None:
    for name, table, _column, _where in INDEXES:
        op.drop_index(name, table_name=table)
    with op.batch_alter_table("customers") as batch:
        batch.drop_column("email_sha256")
