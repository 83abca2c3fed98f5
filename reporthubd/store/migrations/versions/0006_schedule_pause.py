"""Schedules can be paused and resumed, with who, why and since when: `paused_at`,
`paused_by`, `paused_reason` (all NULL while the schedule is not paused), and `resumed_at`,
`resumed_by` of the latest resumption (the misfire policy applies only from that moment: fires
that fell in the pause are never caught up).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from alembic import op
import sqlalchemy as sa

from reporthubd.store.types import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("report_schedules", schema=None) as batch_op:
        batch_op.add_column(sa.Column("paused_at", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("paused_by", sa.String(255), nullable=True))
        batch_op.add_column(sa.Column("paused_reason", sa.String(1000), nullable=True))
        batch_op.add_column(sa.Column("resumed_at", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("resumed_by", sa.String(255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("report_schedules", schema=None) as batch_op:
        for column in ("resumed_by", "resumed_at", "paused_reason", "paused_by", "paused_at"):
            batch_op.drop_column(column)
