"""Delivery logs: one row per recipient group per attempt, and details of each attempt.

An email delivery records one row per recipient group per attempt (recipients accepted, refused
for now, refused for good), so the unique key of an attempt gains `recipient_group` ('' for the
other methods and for rows written before this revision). `recipients` lists the group's
addresses (what a retry sends to); `details` holds what an attempt reports (presigned URL,
remote path, verified size, message id).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from alembic import op
import sqlalchemy as sa

from reporthubd.store.types import JSONDocument

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("report_delivery_logs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "recipient_group",
                sa.String(length=64),
                server_default=sa.text("''"),
                nullable=False,
            )
        )
        batch_op.add_column(sa.Column("recipients", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("details", JSONDocument(), nullable=True))
        # The new key first: on MySQL the old one also serves the execution_id foreign key.
        batch_op.create_unique_constraint(
            "uq_report_delivery_logs_attempt_group",
            ["execution_id", "delivery_id", "attempt", "recipient_group"],
        )
        batch_op.drop_constraint("uq_report_delivery_logs_attempt", type_="unique")


def downgrade() -> None:
    with op.batch_alter_table("report_delivery_logs", schema=None) as batch_op:
        batch_op.create_unique_constraint(
            "uq_report_delivery_logs_attempt", ["execution_id", "delivery_id", "attempt"]
        )
        batch_op.drop_constraint("uq_report_delivery_logs_attempt_group", type_="unique")
        batch_op.drop_column("details")
        batch_op.drop_column("recipients")
        batch_op.drop_column("recipient_group")
