"""The notice ledger: `report_notices`, one row per notice to one target about one incident
(issue 17). The row is the claim: UNIQUE (incident_key, event, target, sequence) lets one node
insert it, however many saw the incident; a sender takes it with a conditional update
(status, node_id, lease_until), so it is sent once across nodes and restarts.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from alembic import op
import sqlalchemy as sa

from reporthubd.store.types import UTCDateTime, utcnow

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "report_notices",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("incident_key", sa.String(255), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("target", sa.String(512), nullable=False),
        sa.Column("sequence", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("config_id", sa.BigInteger(), nullable=True),
        sa.Column("schedule_id", sa.BigInteger(), nullable=True),
        sa.Column("execution_id", sa.String(36), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("status", sa.String(16), server_default=sa.text("'PENDING'"), nullable=False),
        sa.Column("attempt", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("node_id", sa.String(64), nullable=True),
        sa.Column("lease_until", UTCDateTime(), nullable=True),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), server_default=utcnow(), nullable=False),
        sa.Column("sent_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "incident_key", "event", "target", "sequence", name="uq_report_notices_once"
        ),
    )
    op.create_index("ix_report_notices_due", "report_notices", ["status", "next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_report_notices_due", table_name="report_notices")
    op.drop_table("report_notices")
