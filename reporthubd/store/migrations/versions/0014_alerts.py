"""Conditional alerts (issue 17, item 2): a report's condition and send mode
(`report_configs.alert`, a JSON object {"condition": ..., "mode": ..., "check_query": ...};
NULL: no condition, every run delivered), the condition's value and the decision recorded on
each execution (`alert_value`, `alert_decision` deliver/skip/resolved, `alert_reason`), and each
report's alert state (`report_alert_states`: the last evaluated truth, the last delivered
file_sha256), so on_transition and on_change hold across nodes and restarts.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03
"""

from alembic import op
import sqlalchemy as sa

from reporthubd.store.types import JSONDocument, UTCDateTime, utcnow

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("report_configs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("alert", JSONDocument(), nullable=True))
    with op.batch_alter_table("report_executions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("alert_value", sa.String(255), nullable=True))
        batch_op.add_column(sa.Column("alert_decision", sa.String(16), nullable=True))
        batch_op.add_column(sa.Column("alert_reason", sa.String(1000), nullable=True))
    op.create_table(
        "report_alert_states",
        sa.Column("config_id", sa.BigInteger(), nullable=False),
        sa.Column("last_truth", sa.Boolean(), nullable=True),
        sa.Column("last_execution_id", sa.String(36), nullable=True),
        sa.Column("delivered_sha256", sa.String(64), nullable=True),
        sa.Column("delivered_execution_id", sa.String(36), nullable=True),
        sa.Column("updated_at", UTCDateTime(), server_default=utcnow(), nullable=False),
        sa.PrimaryKeyConstraint("config_id"),
    )


def downgrade() -> None:
    op.drop_table("report_alert_states")
    with op.batch_alter_table("report_executions", schema=None) as batch_op:
        batch_op.drop_column("alert_reason")
        batch_op.drop_column("alert_decision")
        batch_op.drop_column("alert_value")
    with op.batch_alter_table("report_configs", schema=None) as batch_op:
        batch_op.drop_column("alert")
