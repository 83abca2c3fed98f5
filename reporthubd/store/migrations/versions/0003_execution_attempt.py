"""Executions get `attempt`, which joins the fire's unique key.

A lost execution (its node died) is marked FAILED and, when the config asks for it, run again
for the same `scheduled_for` (trigger_type `recovery`). The old key UNIQUE (schedule_id,
scheduled_for) made that second row impossible. `attempt` is 0 for the schedule's own claim of
a fire (and for every row written before this revision, or by another service that does not
know the column), and 1, 2, ... for later runs of the same fire (recovery, manual re-runs). The
key becomes UNIQUE (schedule_id, scheduled_for, attempt): the first claim of a fire still
collides with any other node's claim, so claiming stays exactly-once, and two nodes recovering
the same lost run collide on attempt + 1.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from alembic import op
import sqlalchemy as sa

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("report_executions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("attempt", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )
        batch_op.create_unique_constraint(
            "uq_report_executions_fire_attempt", ["schedule_id", "scheduled_for", "attempt"]
        )
        batch_op.drop_constraint("uq_report_executions_fire", type_="unique")


def downgrade() -> None:
    with op.batch_alter_table("report_executions", schema=None) as batch_op:
        batch_op.create_unique_constraint(
            "uq_report_executions_fire", ["schedule_id", "scheduled_for"]
        )
        batch_op.drop_constraint("uq_report_executions_fire_attempt", type_="unique")
        batch_op.drop_column("attempt")
