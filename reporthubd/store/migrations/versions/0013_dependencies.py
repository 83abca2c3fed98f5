"""Dependencies and readiness (issue 20, item 2): a schedule's run may wait for other reports to
have COMPLETED for the same logical period (`report_schedules.depends_on`, a JSON array of report
names or ids) and for a readiness probe (`readiness_query`, run on the report's datasource) until
`wait_deadline` ("+2h" after the fire, or "07:30" on its local day); past it `wait_policy`
(skip, run_anyway) decides. `report_waits` holds each waiting run (one row per execution, the
row itself its claim), with what it waits for, its next check and the lease of the node checking.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03
"""

from alembic import op
import sqlalchemy as sa

from reporthubd.store.types import JSONDocument, UTCDateTime, utcnow

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("report_schedules", schema=None) as batch_op:
        batch_op.add_column(sa.Column("depends_on", JSONDocument(), nullable=True))
        batch_op.add_column(sa.Column("readiness_query", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("wait_deadline", sa.String(64), nullable=True))
        batch_op.add_column(sa.Column("wait_policy", sa.String(16), nullable=True))
    op.create_table(
        "report_waits",
        sa.Column("execution_id", sa.String(36), nullable=False),
        sa.Column("schedule_id", sa.BigInteger(), nullable=False),
        sa.Column("config_id", sa.BigInteger(), nullable=False),
        sa.Column("scheduled_for", UTCDateTime(), nullable=False),
        sa.Column("status", sa.String(16), server_default=sa.text("'WAITING'"), nullable=False),
        sa.Column("waiting_for", sa.Text(), nullable=True),
        sa.Column("deadline_at", UTCDateTime(), nullable=False),
        sa.Column("next_check_at", UTCDateTime(), nullable=False),
        sa.Column("checks", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_result", sa.Text(), nullable=True),
        sa.Column("node_id", sa.String(64), nullable=True),
        sa.Column("lease_until", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), server_default=utcnow(), nullable=False),
        sa.Column("decided_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("execution_id"),
    )
    op.create_index("ix_report_waits_due", "report_waits", ["status", "next_check_at"])


def downgrade() -> None:
    op.drop_index("ix_report_waits_due", table_name="report_waits")
    op.drop_table("report_waits")
    with op.batch_alter_table("report_schedules", schema=None) as batch_op:
        batch_op.drop_column("wait_policy")
        batch_op.drop_column("wait_deadline")
        batch_op.drop_column("readiness_query")
        batch_op.drop_column("depends_on")
