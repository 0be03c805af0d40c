"""segments: segment_memberships without foreign keys

Checking them ran two lookups per stay opened (the customer and the segment), a large share of an
incremental refresh on PostgreSQL. The statements that open stays now lock the segment row once and
the customers they enter (FOR KEY SHARE, rows they read anyway for the Segment Entered events), and
deleting a customer or a segment deletes its stays itself.

Revision ID: 0015_segments
Revises: 0014_ingest
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0015_segments"
down_revision: str | None = "0014_ingest"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CUSTOMER_FK = "fk_segment_memberships_customer_id_customers"
SEGMENT_FK = "fk_segment_memberships_segment_id_segments"


def upgrade() -> None:
    with op.batch_alter_table("segment_memberships", schema=None) as batch_op:
        batch_op.drop_constraint(CUSTOMER_FK, type_="foreignkey")
        batch_op.drop_constraint(SEGMENT_FK, type_="foreignkey")


def downgrade() -> None:
    # Stays left by a customer or segment deleted meanwhile would fail the constraints.
    op.execute("DELETE FROM segment_memberships WHERE customer_id NOT IN (SELECT id FROM customers)")
    op.execute("DELETE FROM segment_memberships WHERE segment_id NOT IN (SELECT id FROM segments)")
    with op.batch_alter_table("segment_memberships", schema=None) as batch_op:
        batch_op.create_foreign_key(CUSTOMER_FK, "customers", ["customer_id"], ["id"], ondelete="CASCADE")
        batch_op.create_foreign_key(SEGMENT_FK, "segments", ["segment_id"], ["id"], ondelete="CASCADE")
