"""Data-driven runs (issue 18): `report_audience_drivers` names a report's driver query (any
datasource; one row per audience, its key column and recipients column); `report_bursts` is one
data-driven run (keyed by the parent run's logical id) with its audience count and final counts;
`report_audiences` holds each audience of a burst (key, recipients, parameters, overrides) and the
id of its child execution, drawn from (burst, key): inserting that execution row is the claim.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

from alembic import op
import sqlalchemy as sa

from reporthubd.store.types import JSONDocument, UTCDateTime, utcnow

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
LONG_TEXT = sa.Text().with_variant(sa.dialects.mysql.LONGTEXT(), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "report_audience_drivers",
        sa.Column("id", BIGINT, autoincrement=True, nullable=False),
        sa.Column("config_id", BIGINT, sa.ForeignKey("report_configs.id"), nullable=False),
        sa.Column("datasource_id", BIGINT, sa.ForeignKey("report_datasources.id"), nullable=False),
        sa.Column("query_text", LONG_TEXT, nullable=False),
        sa.Column("key_column", sa.String(255), nullable=True),
        sa.Column("recipients_column", sa.String(255), nullable=True),
        sa.Column("is_active", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("created_at", UTCDateTime(), server_default=utcnow(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), server_default=utcnow(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("config_id", name="uq_report_audience_drivers_config"),
    )
    op.create_table(
        "report_bursts",
        sa.Column("burst_id", sa.String(36), nullable=False),
        sa.Column("config_id", BIGINT, nullable=False),
        sa.Column("audiences", sa.Integer(), nullable=True),
        sa.Column("enumerated_at", UTCDateTime(), nullable=True),
        sa.Column("delivered", sa.Integer(), nullable=True),
        sa.Column("failed", sa.Integer(), nullable=True),
        sa.Column("skipped", sa.Integer(), nullable=True),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), server_default=utcnow(), nullable=False),
        sa.PrimaryKeyConstraint("burst_id"),
    )
    op.create_table(
        "report_audiences",
        sa.Column("child_id", sa.String(36), nullable=False),
        sa.Column("burst_id", sa.String(36), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("audience_key", sa.String(255), nullable=False),
        sa.Column("audience", JSONDocument(), nullable=False),
        sa.Column("created_at", UTCDateTime(), server_default=utcnow(), nullable=False),
        sa.PrimaryKeyConstraint("child_id"),
        sa.UniqueConstraint("burst_id", "audience_key", name="uq_report_audiences_key"),
    )
    op.create_index("ix_report_audiences_burst_seq", "report_audiences", ["burst_id", "seq"])


def downgrade() -> None:
    op.drop_index("ix_report_audiences_burst_seq", table_name="report_audiences")
    op.drop_table("report_audiences")
    op.drop_table("report_bursts")
    op.drop_table("report_audience_drivers")
