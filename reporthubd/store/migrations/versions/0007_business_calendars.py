"""Business calendars (issue 20): `report_calendars` holds named calendars (a country and
subdivision whose public holidays the `holidays` library knows, plus explicit `added` closed
days and `removed` business days); a schedule may follow one (`calendar_name`, by name) with a
`calendar_policy` (skip, next_business_day, previous_business_day). A fire moved to another day
keeps its logical `scheduled_for`; `shifted_to` holds the instant it was moved to and
`shift_reason` why.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from alembic import op
import sqlalchemy as sa

from reporthubd.store.types import JSONDocument, UTCDateTime, utcnow

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "report_calendars",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("country", sa.String(8), nullable=True),
        sa.Column("subdivision", sa.String(16), nullable=True),
        sa.Column("added_dates", JSONDocument(), nullable=True),
        sa.Column("removed_dates", JSONDocument(), nullable=True),
        sa.Column("is_active", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("created_at", UTCDateTime(), server_default=utcnow(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), server_default=utcnow(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    with op.batch_alter_table("report_schedules", schema=None) as batch_op:
        batch_op.add_column(sa.Column("calendar_name", sa.String(255), nullable=True))
        batch_op.add_column(sa.Column("calendar_policy", sa.String(32), nullable=True))
    with op.batch_alter_table("report_executions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("shifted_to", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("shift_reason", sa.String(1000), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("report_executions", schema=None) as batch_op:
        batch_op.drop_column("shift_reason")
        batch_op.drop_column("shifted_to")
    with op.batch_alter_table("report_schedules", schema=None) as batch_op:
        batch_op.drop_column("calendar_policy")
        batch_op.drop_column("calendar_name")
    op.drop_table("report_calendars")
