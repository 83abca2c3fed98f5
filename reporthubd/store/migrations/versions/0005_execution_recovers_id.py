"""Executions get `recovers_id`: for a recovery run, the id of the run it stands in for (the
first of the chain, when a recovery is itself lost and recovered).

Deliveries name the logical run to receivers (webhook `Idempotency-Key`): with it, a recovery
run sends under the key of the run that died, so a receiver that got the lost run's delivery
drops the repeat.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from alembic import op
import sqlalchemy as sa

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("report_executions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("recovers_id", sa.String(36), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("report_executions", schema=None) as batch_op:
        batch_op.drop_column("recovers_id")
