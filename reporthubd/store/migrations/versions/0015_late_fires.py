"""Late fires (issue 17, item 3): `report_late_fires`, one row per fire judged past its
schedule's deadline, inserted by the node that judged it first: its claim, so the fire is
counted once (reporthubd_late_runs) however many nodes watch the same deadline, and a node
restarted inside the look-back window does not count it again.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04
"""

from alembic import op
import sqlalchemy as sa

from reporthubd.store.types import UTCDateTime, utcnow

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "report_late_fires",
        sa.Column("schedule_id", sa.BigInteger(), nullable=False),
        sa.Column("scheduled_for", UTCDateTime(), nullable=False),
        sa.Column("config_id", sa.BigInteger(), nullable=False),
        sa.Column("execution_id", sa.String(36), nullable=True),
        sa.Column("node_id", sa.String(64), nullable=True),
        sa.Column("created_at", UTCDateTime(), server_default=utcnow(), nullable=False),
        sa.PrimaryKeyConstraint("schedule_id", "scheduled_for"),
    )


def downgrade() -> None:
    op.drop_table("report_late_fires")
