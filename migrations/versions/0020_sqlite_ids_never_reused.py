"""SQLite: ids are never reused (AUTOINCREMENT), as PostgreSQL's identities never are

Without AUTOINCREMENT SQLite gives the next row the highest id plus one, so deleting the newest row (an
erased customer, a visitor merged into a known one, its events and cases) handed its id to the next
one: a running journey, a merge redirect or a workflow id made from it then named someone else. Every
table with an integer surrogate key is copied into an AUTOINCREMENT one; PostgreSQL is unchanged.

Revision ID: 0020_sqlite_ids_never_reused
Revises: 0019_customer_merges
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0020_sqlite_ids_never_reused"
down_revision: str | None = "0019_customer_merges"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The tables with an integer surrogate key at this revision (domain/models.py marks them for new ones).
TABLES = (
    "agents",
    "api_keys",
    "case_notes",
    "case_outbox",
    "cases",
    "customer_erasures",
    "customers",
    "enrollments",
    "events",
    "journey_listeners",
    "journey_send_slots",
    "journey_steps",
    "journey_versions",
    "loyalty_entries",
    "loyalty_programs",
    "loyalty_tier_changes",
    "messages",
    "segment_memberships",
    "segment_versions",
    "subscriptions",
    "suppressions",
    "template_versions",
)


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def _rebuild(autoincrement: bool) -> None:
    # Copying a table drops the original; with foreign keys on, that would delete the rows of every
    # table referring to it (migrations/env.py turns them off for the run).
    if op.get_bind().exec_driver_sql("PRAGMA foreign_keys").scalar():
        raise RuntimeError("foreign keys must be off while SQLite tables are copied")
    for table in TABLES:
        with op.batch_alter_table(
            table, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
        ):
            pass


def upgrade() -> None:
    if _sqlite():
        _rebuild(True)
        # The copy starts each counter at the highest id now stored. The ids of customers already
        # erased or merged away are known too: no newcomer takes those either.
        op.execute("DELETE FROM sqlite_sequence WHERE name = 'customers'")
        op.execute(
            "INSERT INTO sqlite_sequence (name, seq) SELECT 'customers', max(id) FROM ("
            " SELECT max(id) AS id FROM customers"
            " UNION ALL SELECT max(merged_id) FROM customer_merges"
            " UNION ALL SELECT max(customer_id) FROM customer_erasures) AS known"
            " HAVING max(id) IS NOT NULL"
        )


def downgrade() -> None:
    if _sqlite():
        _rebuild(False)
