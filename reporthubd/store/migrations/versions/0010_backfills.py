"""Backfills (issue 20, item 3): `report_backfills`, one row per requested re-run of a schedule's
fires over a range (its options, its state, and the lease of the node running it), and
`report_backfill_fires`, the fires it decided to run, each with the attempt and execution it
took, so that a backfill resumes after a restart, on any node, without doubling a fire.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from alembic import op
import sqlalchemy as sa

from reporthubd.store.types import UTCDateTime, utcnow

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "report_backfills",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("schedule_id", sa.BigInteger(), nullable=False),
        sa.Column("config_id", sa.BigInteger(), nullable=False),
        sa.Column("range_from", UTCDateTime(), nullable=False),
        sa.Column("range_to", UTCDateTime(), nullable=False),
        sa.Column("reprocess", sa.String(8), server_default=sa.text("'none'"), nullable=False),
        sa.Column("deliver", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("concurrency", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("status", sa.String(16), server_default=sa.text("'PENDING'"), nullable=False),
        sa.Column("total", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("requested_by", sa.String(255), nullable=True),
        sa.Column("node_id", sa.String(64), nullable=True),
        sa.Column("lease_until", UTCDateTime(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("cancelled_by", sa.String(255), nullable=True),
        sa.Column("created_at", UTCDateTime(), server_default=utcnow(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), server_default=utcnow(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_report_backfills_status", "report_backfills", ["status"])
    op.create_table(
        "report_backfill_fires",
        sa.Column("backfill_id", sa.String(36), nullable=False),
        sa.Column("scheduled_for", UTCDateTime(), nullable=False),
        sa.Column("status", sa.String(16), server_default=sa.text("'PENDING'"), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=True),
        sa.Column("execution_id", sa.String(36), nullable=True),
        sa.Column("note", sa.String(1000), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("backfill_id", "scheduled_for"),
    )
    op.create_index(
        "ix_report_backfill_fires_status", "report_backfill_fires", ["backfill_id", "status"]
    )


def downgrade() -> None:
    op.drop_index("ix_report_backfill_fires_status", table_name="report_backfill_fires")
    op.drop_table("report_backfill_fires")
    op.drop_index("ix_report_backfills_status", table_name="report_backfills")
    op.drop_table("report_backfills")
