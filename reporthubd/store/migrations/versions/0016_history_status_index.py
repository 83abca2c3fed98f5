"""A report's history by status (issue 21, the console's benchmark): the index
(config_id, status, created_at) on report_executions. A status filter's page and its count
(GET /api/executions?config_id=&status=) read it instead of every run of the report: with
100,000 runs, a FAILED page with its count took 121 ms on SQLite and 53 ms on MariaDB, 3 and
6 ms with it; a status no run has (TIMEOUT) walked the whole history (MariaDB 454 ms).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04
"""

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_report_executions_config_status_created",
        "report_executions",
        ["config_id", "status", "created_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_report_executions_config_status_created", table_name="report_executions")
