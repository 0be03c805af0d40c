"""journey_steps: an index of each journey's steps in enrollment order, for the analytics' transitions

``GET /api/analytics/journeys/{id}`` counts the moves between nodes with LAG/LEAD over the journey's
steps, partitioned by enrollment (workflow_id) and ordered by (entered_at, id). No index held the
steps in that order, so PostgreSQL read them all and sorted them before the window (at 50 000
enrollments, 150 000 steps: a parallel sort and gather merge, most of the query's time).
``(journey_id, workflow_id, entered_at, id)`` holds them in exactly that order; on PostgreSQL it
carries node_id, left_at and outcome as well (INCLUDE), so the window reads the index alone, with no
sort and no visit to the table. SQLite gets the same key (it has no INCLUDE) and walks it the same way.

A step whose wait ends (left_at, outcome set) now changes an indexed column, so its update cannot be
HOT; step rows are appended and their pages full long before a wait ends, so few such updates were
HOT before either.

On PostgreSQL the index is built CONCURRENTLY, outside the run's transaction, as 0031 does: the
recorder's inserts and updates go on during the build. An interrupted build leaves an INVALID index
of the name behind; it is dropped and built again.

Revision ID: 0036_journey_steps_path
Revises: 0035_engagement_message_refs
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0036_journey_steps_path"
down_revision: str | None = "0035_engagement_message_refs"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME, TABLE = "ix_journey_steps_journey_path", "journey_steps"
COLUMNS = ["journey_id", "workflow_id", "entered_at", "id"]
INCLUDE = ["node_id", "left_at", "outcome"]


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        op.create_index(NAME, TABLE, COLUMNS)
        return
    with op.get_context().autocommit_block():
        op.drop_index(NAME, table_name=TABLE, if_exists=True, postgresql_concurrently=True)
        op.create_index(NAME, TABLE, COLUMNS, postgresql_include=INCLUDE, postgresql_concurrently=True)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        op.drop_index(NAME, table_name=TABLE)
        return
    with op.get_context().autocommit_block():
        op.drop_index(NAME, table_name=TABLE, if_exists=True, postgresql_concurrently=True)
