"""messages, events: the message ref stored, so analytics match opens and clicks by equality

Campaign analytics credit an ``Email Opened`` / ``Email Link Clicked`` event to the message its
``message_ref`` property names (domain/email/refs.py: a digest of the message's idempotency key and its
template). They computed the ref of every message of the report in SQL (sha256 per row) and read it out
of every open's and click's JSON at each read: on PostgreSQL at 100 000 messages and 43 000 opens and
clicks the hashing alone was three quarters of the templates report's query (185 of 250 ms; 78 ms
now). ``messages.message_ref`` now holds the ref, written with the row (the key and template never
change), and ``events.message_ref`` the property when it is a string of at most 96 characters (no message's ref is longer), written at ingestion.
``ix_events_message_ref`` holds the events that have one only (the name and time beside it, which the
reports filter on), so a report reads the opens and clicks from it alone instead of from the table.

Existing rows are filled in batches of ids, as 0033 fills its digests: on PostgreSQL each batch commits
on its own (outside the run's transaction), so no batch holds its rows' locks for long and ingestion
and sends go on meanwhile, and the index is built CONCURRENTLY after it; an interrupted run starts
again where it stopped (only rows without a ref are filled, the columns are added only if missing, an
index left invalid is built again). The backfill rewrites every message and every event with a ref:
a VACUUM after it (autovacuum's, or one by hand) lets the tables reuse the old versions' space. An API
or worker of an earlier release writes no ref, so an open it records, or a message it sends, after
the backfill would not be counted: replace them right after migrating.

Revision ID: 0035_engagement_message_refs
Revises: 0034_broadcasts_operational
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from domain.db import sql_sha256_hex

revision: str = "0035_engagement_message_refs"
down_revision: str | None = "0034_broadcasts_operational"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 10_000  # ids per UPDATE
LENGTH = 96  # domain/events/models.MESSAGE_REF_LENGTH

messages = sa.table(
    "messages",
    sa.column("id", sa.BigInteger),
    sa.column("idempotency_key", sa.String),
    sa.column("template_id", sa.String),
    sa.column("message_ref", sa.String),
)
events = sa.table("events", sa.column("id", sa.BigInteger), sa.column("message_ref", sa.String))

INDEX = ("ix_events_message_ref", "events", ["message_ref", "name", "timestamp"], "message_ref IS NOT NULL")

# The property as events.message_ref holds it (domain/events/models.message_ref_of), per dialect.
EVENT_REF = {
    "postgresql": (
        f"CASE WHEN jsonb_typeof(properties -> 'message_ref') = 'string'"
        f" AND length(properties ->> 'message_ref') <= {LENGTH} THEN properties ->> 'message_ref' END"
    ),
    "sqlite": (
        f"CASE WHEN json_type(properties, '$.message_ref') = 'text'"
        f" AND length(json_extract(properties, '$.message_ref')) <= {LENGTH}"
        " THEN json_extract(properties, '$.message_ref') END"
    ),
}


def upgrade() -> None:
    bind = op.get_bind()
    name, table, columns, where = INDEX
    if bind.dialect.name != "postgresql":
        op.add_column("messages", sa.Column("message_ref", sa.String(length=LENGTH), nullable=True))
        op.add_column("events", sa.Column("message_ref", sa.String(length=LENGTH), nullable=True))
        _backfill(bind)
        op.create_index(name, table, columns, sqlite_where=sa.text(where))
        return
    op.execute(f"ALTER TABLE messages ADD COLUMN IF NOT EXISTS message_ref VARCHAR({LENGTH})")
    op.execute(f"ALTER TABLE events ADD COLUMN IF NOT EXISTS message_ref VARCHAR({LENGTH})")
    with op.get_context().autocommit_block():
        _backfill(bind)
        # An interrupted build leaves an INVALID index of the name: dropped and built again.
        op.drop_index(name, table_name=table, if_exists=True, postgresql_concurrently=True)
        op.create_index(name, table, columns, postgresql_where=sa.text(where), postgresql_concurrently=True)


def _backfill(bind) -> None:
    digest = sql_sha256_hex(messages.c.idempotency_key, bind.dialect.name)
    ref = sa.func.substr(digest, 1, 24) + "~" + sa.func.coalesce(messages.c.template_id, "")
    for low in _batches(bind, messages):
        bind.execute(
            messages.update()
            .where(messages.c.id > low, messages.c.id <= low + BATCH, messages.c.message_ref.is_(None))
            .values(message_ref=ref)
        )
    event_ref = sa.text(EVENT_REF[bind.dialect.name])
    for low in _batches(bind, events):
        bind.execute(
            events.update()
            .where(events.c.id > low, events.c.id <= low + BATCH, events.c.message_ref.is_(None))
            .where(sa.text(f"({EVENT_REF[bind.dialect.name]}) IS NOT NULL"))
            .values(message_ref=event_ref)
        )


def _batches(bind, table) -> range:
    last = bind.scalar(sa.select(sa.func.max(table.c.id))) or 0
    return range(0, last, BATCH)


def downgrade() -> None:
    name, table, _columns, _where = INDEX
    op.drop_index(name, table_name=table)
    for table in ("events", "messages"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("message_ref")
