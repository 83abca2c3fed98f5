"""Who is told about a report's runs, and by when a schedule's run must have completed
(issue 17, items 1 and 3): `report_configs.notify`, a JSON object {"owners": [...],
"rules": [...]} (NULL: only the configured default rule), and `report_schedules.deadline`
("07:30" local time on the fire's day, or "+20s"/"+15m"/"+2h" after the fire; NULL: none).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from alembic import op
import sqlalchemy as sa

from reporthubd.store.types import JSONDocument

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("report_configs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("notify", JSONDocument(), nullable=True))
    with op.batch_alter_table("report_schedules", schema=None) as batch_op:
        batch_op.add_column(sa.Column("deadline", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("report_schedules", schema=None) as batch_op:
        batch_op.drop_column("deadline")
    with op.batch_alter_table("report_configs", schema=None) as batch_op:
        batch_op.drop_column("notify")
