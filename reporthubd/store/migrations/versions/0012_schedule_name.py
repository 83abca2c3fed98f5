"""A schedule's stable name within its report (issue 21, item 5): `report_schedules.name`
(NULL: unnamed, matched by its cron and zone as before). With a name, a catalog's edited cron or
zone updates the schedule in place instead of adding a second one beside it. Unique per report
(several unnamed schedules may share a report: NULLs never collide).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03
"""

from alembic import op
import sqlalchemy as sa

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("report_schedules", schema=None) as batch_op:
        batch_op.add_column(sa.Column("name", sa.String(255), nullable=True))
    op.create_index(
        "uq_report_schedules_config_name", "report_schedules", ["config_id", "name"], unique=True
    )


def downgrade() -> None:
    op.drop_index("uq_report_schedules_config_name", table_name="report_schedules")
    with op.batch_alter_table("report_schedules", schema=None) as batch_op:
        batch_op.drop_column("name")
