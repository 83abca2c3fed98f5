"""Nodes get `stopped_at`: set by a node that stops cleanly, cleared when it registers again.

A node that stops leaves its queued (never started) executions PENDING. With `stopped_at` set,
the other nodes adopt them at their next sweep instead of waiting until its heartbeat is older
than `scheduler.node_lost_after_seconds`.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from alembic import op
import sqlalchemy as sa

from reporthubd.store.types import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("report_nodes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("stopped_at", UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("report_nodes", schema=None) as batch_op:
        batch_op.drop_column("stopped_at")
