"""The store contract (ARCHITECTURE.md) as SQLAlchemy Core tables: defined once, used by every
query in the store package and compared against the migrations by the test suite.

Change only by adding nullable or defaulted columns, through a new migration.
"""

from __future__ import annotations

import sqlalchemy as sa

from reporthubd.store.types import (
    JSONDocument,
    UTCDateTime,
    created_at,
    id_column,
    is_active,
    updated_at,
    utcnow,
)

metadata = sa.MetaData()

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def ref(name: str, target: str | None, *, nullable: bool = False) -> sa.Column[int]:
    if target is None:
        return sa.Column(name, BIGINT, nullable=nullable)
    return sa.Column(name, BIGINT, sa.ForeignKey(target), nullable=nullable)


datasources = sa.Table(
    "report_datasources",
    metadata,
    id_column(),
    sa.Column("name", sa.String(255), nullable=False, unique=True),
    sa.Column("type", sa.String(32), nullable=False),
    sa.Column("connection_config", JSONDocument(), nullable=False),
    sa.Column("max_concurrent_queries", sa.Integer(), nullable=True),
    is_active(),
    created_at(),
    updated_at(),
)

configs = sa.Table(
    "report_configs",
    metadata,
    id_column(),
    sa.Column("name", sa.String(255), nullable=False, unique=True),
    sa.Column("description", sa.Text(), nullable=True),
    ref("datasource_id", "report_datasources.id"),
    sa.Column(
        "query_text",
        sa.Text().with_variant(sa.dialects.mysql.LONGTEXT(), "mysql", "mariadb"),
        nullable=False,
    ),
    sa.Column("parameters", JSONDocument(), nullable=True),
    sa.Column("output_format", sa.String(16), nullable=False),
    sa.Column("format_options", JSONDocument(), nullable=True),
    sa.Column("file_name_template", sa.String(512), nullable=True),
    sa.Column("timeout_seconds", sa.Integer(), nullable=True),
    sa.Column("max_rows", sa.BigInteger(), nullable=True),
    sa.Column(
        "empty_result_policy", sa.String(16), nullable=False, server_default=sa.text("'deliver'")
    ),
    is_active(),
    created_at(),
    updated_at(),
    # notices (revision 0009): {"owners": [...], "rules": [...]}; NULL: the configured default
    sa.Column("notify", JSONDocument(), nullable=True),
    # conditional alert (revision 0014): {"condition": ..., "mode": ..., "check_query": ...}
    sa.Column("alert", JSONDocument(), nullable=True),
)

schedules = sa.Table(
    "report_schedules",
    metadata,
    id_column(),
    ref("config_id", "report_configs.id"),
    sa.Column("cron_expression", sa.String(255), nullable=False),
    sa.Column("timezone", sa.String(64), nullable=True),
    sa.Column("parameters", JSONDocument(), nullable=True),
    sa.Column(
        "misfire_policy", sa.String(16), nullable=False, server_default=sa.text("'run_once'")
    ),
    sa.Column("misfire_grace_seconds", sa.Integer(), nullable=True),
    sa.Column("start_at", UTCDateTime(), nullable=True),
    sa.Column("end_at", UTCDateTime(), nullable=True),
    is_active(),
    sa.Column("last_run_at", UTCDateTime(), nullable=True),
    sa.Column("next_run_at", UTCDateTime(), nullable=True),
    created_at(),
    updated_at(),
    # paused (revision 0006): all three NULL while the schedule runs
    sa.Column("paused_at", UTCDateTime(), nullable=True),
    sa.Column("paused_by", sa.String(255), nullable=True),
    sa.Column("paused_reason", sa.String(1000), nullable=True),
    sa.Column("resumed_at", UTCDateTime(), nullable=True),
    sa.Column("resumed_by", sa.String(255), nullable=True),
    # business calendar (revision 0007): report_calendars.name, and what a closed day does
    sa.Column("calendar_name", sa.String(255), nullable=True),
    sa.Column("calendar_policy", sa.String(32), nullable=True),
    # deadline (revision 0009): "07:30" on the fire's local day, or "+20s" after the fire
    sa.Column("deadline", sa.String(64), nullable=True),
    # name (revision 0012): stable within the report (a catalog's edited cron updates it)
    sa.Column("name", sa.String(255), nullable=True),
    # dependencies (revision 0013): reports that must have COMPLETED for the fire's period,
    # a readiness probe, until when a run waits, and what happens past it
    sa.Column("depends_on", JSONDocument(), nullable=True),
    sa.Column("readiness_query", sa.Text(), nullable=True),
    sa.Column("wait_deadline", sa.String(64), nullable=True),
    sa.Column("wait_policy", sa.String(16), nullable=True),
    sa.Index("uq_report_schedules_config_name", "config_id", "name", unique=True),
)

deliveries = sa.Table(
    "report_deliveries",
    metadata,
    id_column(),
    ref("config_id", "report_configs.id"),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("method", sa.String(32), nullable=False),
    sa.Column("delivery_config", JSONDocument(), nullable=False),
    sa.Column("max_retry", sa.Integer(), nullable=False, server_default=sa.text("3")),
    sa.Column("retry_interval_minutes", sa.Integer(), nullable=False, server_default=sa.text("5")),
    is_active(),
    created_at(),
    updated_at(),
)

recipients = sa.Table(
    "report_delivery_recipients",
    metadata,
    id_column(),
    ref("delivery_id", "report_deliveries.id"),
    sa.Column("recipient_type", sa.String(8), nullable=False, server_default=sa.text("'to'")),
    sa.Column("email", sa.String(320), nullable=False),
    sa.Column("name", sa.String(255), nullable=True),
    is_active(),
)

executions = sa.Table(
    "report_executions",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    ref("config_id", None),
    ref("schedule_id", None, nullable=True),
    sa.Column("trigger_type", sa.String(16), nullable=False),
    sa.Column("scheduled_for", UTCDateTime(), nullable=True),
    sa.Column("status", sa.String(16), nullable=False, server_default=sa.text("'PENDING'")),
    sa.Column("parameters", JSONDocument(), nullable=True),
    sa.Column("node_id", sa.String(128), nullable=True),
    sa.Column("heartbeat_at", UTCDateTime(), nullable=True),
    sa.Column("started_at", UTCDateTime(), nullable=True),
    sa.Column("finished_at", UTCDateTime(), nullable=True),
    sa.Column("row_count", sa.BigInteger(), nullable=True),
    sa.Column("file_name", sa.String(512), nullable=True),
    sa.Column("file_path", sa.String(1024), nullable=True),
    sa.Column("file_size", sa.BigInteger(), nullable=True),
    sa.Column("file_sha256", sa.String(64), nullable=True),
    sa.Column("error_message", sa.Text(), nullable=True),
    created_at(),
    # Added by revision 0003: 0 for the schedule's own claim of a fire, 1, 2, ... for later runs
    # of the same fire (recovery after a lost node, manual re-runs); part of the fire's key.
    sa.Column("attempt", sa.Integer(), nullable=False, server_default=sa.text("0")),
    # Added by revision 0005: for a recovery run, the id of the run it stands in for (the first
    # of the chain): deliveries use it to name the logical run (webhook Idempotency-Key).
    sa.Column("recovers_id", sa.String(36), nullable=True),
    # Added by revision 0007: a fire its calendar moved keeps its scheduled_for; here the
    # instant it was moved to, and why.
    sa.Column("shifted_to", UTCDateTime(), nullable=True),
    sa.Column("shift_reason", sa.String(1000), nullable=True),
    # Added by revision 0014: the alert condition's value and the send decision (deliver, skip,
    # resolved) with its reason; NULL for a report without an alert
    sa.Column("alert_value", sa.String(255), nullable=True),
    sa.Column("alert_decision", sa.String(16), nullable=True),
    sa.Column("alert_reason", sa.String(1000), nullable=True),
    sa.UniqueConstraint(
        "schedule_id", "scheduled_for", "attempt", name="uq_report_executions_fire_attempt"
    ),
    sa.Index("ix_report_executions_status_heartbeat", "status", "heartbeat_at"),
    sa.Index("ix_report_executions_config_created", "config_id", "created_at"),
    sa.Index("ix_report_executions_config_status_created", "config_id", "status", "created_at"),
    sa.Index("ix_report_executions_created", "created_at"),
)

delivery_logs = sa.Table(
    "report_delivery_logs",
    metadata,
    id_column(),
    sa.Column(
        "execution_id",
        sa.String(36),
        sa.ForeignKey("report_executions.id", ondelete="CASCADE"),
        nullable=False,
    ),
    ref("delivery_id", None),
    sa.Column("attempt", sa.Integer(), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("target", sa.String(1024), nullable=True),
    sa.Column("error_message", sa.Text(), nullable=True),
    sa.Column("started_at", UTCDateTime(), nullable=True),
    sa.Column("finished_at", UTCDateTime(), nullable=True),
    sa.Column("next_retry_at", UTCDateTime(), nullable=True),
    # Added by revision 0002: email records one row per recipient group per attempt.
    sa.Column("recipient_group", sa.String(64), nullable=False, server_default=sa.text("''")),
    sa.Column("recipients", sa.Text(), nullable=True),
    sa.Column("details", JSONDocument(), nullable=True),
    sa.UniqueConstraint(
        "execution_id",
        "delivery_id",
        "attempt",
        "recipient_group",
        name="uq_report_delivery_logs_attempt_group",
    ),
    sa.Index("ix_report_delivery_logs_status_retry", "status", "next_retry_at"),
)

nodes = sa.Table(
    "report_nodes",
    metadata,
    sa.Column("node_id", sa.String(128), primary_key=True),
    sa.Column("hostname", sa.String(255), nullable=True),
    sa.Column("pid", sa.Integer(), nullable=True),
    sa.Column("version", sa.String(32), nullable=True),
    sa.Column("started_at", UTCDateTime(), nullable=True),
    sa.Column("heartbeat_at", UTCDateTime(), nullable=True),
    # Added by revision 0004: set when the node stops cleanly, cleared when it registers again.
    sa.Column("stopped_at", UTCDateTime(), nullable=True),
)

calendars = sa.Table(
    "report_calendars",
    metadata,
    id_column(),
    sa.Column("name", sa.String(255), nullable=False, unique=True),
    sa.Column("country", sa.String(8), nullable=True),
    sa.Column("subdivision", sa.String(16), nullable=True),
    sa.Column("added_dates", JSONDocument(), nullable=True),
    sa.Column("removed_dates", JSONDocument(), nullable=True),
    is_active(),
    created_at(),
    updated_at(),
)

audience_drivers = sa.Table(
    # revision 0011: a report's driver query; each of its rows is one audience of a run
    "report_audience_drivers",
    metadata,
    id_column(),
    ref("config_id", "report_configs.id"),
    ref("datasource_id", "report_datasources.id"),
    sa.Column(
        "query_text",
        sa.Text().with_variant(sa.dialects.mysql.LONGTEXT(), "mysql", "mariadb"),
        nullable=False,
    ),
    sa.Column("key_column", sa.String(255), nullable=True),
    sa.Column("recipients_column", sa.String(255), nullable=True),
    is_active(),
    created_at(),
    updated_at(),
    sa.UniqueConstraint("config_id", name="uq_report_audience_drivers_config"),
)

bursts = sa.Table(
    # revision 0011: one data-driven run (the parent's logical id: recovers_id or id)
    "report_bursts",
    metadata,
    sa.Column("burst_id", sa.String(36), primary_key=True),
    ref("config_id", None),
    sa.Column("audiences", sa.Integer(), nullable=True),
    sa.Column("enumerated_at", UTCDateTime(), nullable=True),
    sa.Column("delivered", sa.Integer(), nullable=True),
    sa.Column("failed", sa.Integer(), nullable=True),
    sa.Column("skipped", sa.Integer(), nullable=True),
    sa.Column("finished_at", UTCDateTime(), nullable=True),
    created_at(),
)

audiences = sa.Table(
    # revision 0011: one audience of a burst; child_id is its child execution's id, drawn from
    # (burst_id, audience_key), so inserting that execution row is the audience's claim
    "report_audiences",
    metadata,
    sa.Column("child_id", sa.String(36), primary_key=True),
    sa.Column("burst_id", sa.String(36), nullable=False),
    sa.Column("seq", sa.Integer(), nullable=False),
    sa.Column("audience_key", sa.String(255), nullable=False),
    sa.Column("audience", JSONDocument(), nullable=False),
    created_at(),
    sa.UniqueConstraint("burst_id", "audience_key", name="uq_report_audiences_key"),
    sa.Index("ix_report_audiences_burst_seq", "burst_id", "seq"),
)

notices = sa.Table(
    # revision 0008: one notice to one target about one incident; the row is its claim
    "report_notices",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("incident_key", sa.String(255), nullable=False),
    sa.Column("event", sa.String(32), nullable=False),
    sa.Column("target", sa.String(512), nullable=False),
    sa.Column("sequence", sa.Integer(), nullable=False, server_default=sa.text("0")),
    sa.Column("config_id", sa.BigInteger(), nullable=True),
    sa.Column("schedule_id", sa.BigInteger(), nullable=True),
    sa.Column("execution_id", sa.String(36), nullable=True),
    sa.Column("message", sa.Text(), nullable=True),
    sa.Column("status", sa.String(16), nullable=False, server_default=sa.text("'PENDING'")),
    sa.Column("attempt", sa.Integer(), nullable=False, server_default=sa.text("0")),
    sa.Column("node_id", sa.String(64), nullable=True),
    sa.Column("lease_until", UTCDateTime(), nullable=True),
    sa.Column("next_attempt_at", UTCDateTime(), nullable=True),
    sa.Column("error_message", sa.Text(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False, server_default=utcnow()),
    sa.Column("sent_at", UTCDateTime(), nullable=True),
    sa.UniqueConstraint(
        "incident_key", "event", "target", "sequence", name="uq_report_notices_once"
    ),
    sa.Index("ix_report_notices_due", "status", "next_attempt_at"),
)

backfills = sa.Table(
    # revision 0010: a requested re-run of a schedule's fires over a range, and its lease
    "report_backfills",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("schedule_id", sa.BigInteger(), nullable=False),
    sa.Column("config_id", sa.BigInteger(), nullable=False),
    sa.Column("range_from", UTCDateTime(), nullable=False),
    sa.Column("range_to", UTCDateTime(), nullable=False),
    sa.Column("reprocess", sa.String(8), nullable=False, server_default=sa.text("'none'")),
    sa.Column("deliver", sa.Boolean(), nullable=False, server_default=sa.true()),
    sa.Column("concurrency", sa.Integer(), nullable=False, server_default=sa.text("1")),
    sa.Column("status", sa.String(16), nullable=False, server_default=sa.text("'PENDING'")),
    sa.Column("total", sa.Integer(), nullable=False, server_default=sa.text("0")),
    sa.Column("requested_by", sa.String(255), nullable=True),
    sa.Column("node_id", sa.String(64), nullable=True),
    sa.Column("lease_until", UTCDateTime(), nullable=True),
    sa.Column("error_message", sa.Text(), nullable=True),
    sa.Column("cancelled_by", sa.String(255), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False, server_default=utcnow()),
    sa.Column("updated_at", UTCDateTime(), nullable=False, server_default=utcnow()),
    sa.Column("finished_at", UTCDateTime(), nullable=True),
    sa.Index("ix_report_backfills_status", "status"),
)

backfill_fires = sa.Table(
    # revision 0010: the fires a backfill runs, each with the attempt and execution it took
    "report_backfill_fires",
    metadata,
    sa.Column("backfill_id", sa.String(36), primary_key=True),
    sa.Column("scheduled_for", UTCDateTime(), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False, server_default=sa.text("'PENDING'")),
    sa.Column("attempt", sa.Integer(), nullable=True),
    sa.Column("execution_id", sa.String(36), nullable=True),
    sa.Column("note", sa.String(1000), nullable=True),
    sa.Column("updated_at", UTCDateTime(), nullable=True),
    sa.Index("ix_report_backfill_fires_status", "backfill_id", "status"),
)

waits = sa.Table(
    # revision 0013: a run waiting for its dependencies or readiness probe; the row is its claim
    "report_waits",
    metadata,
    sa.Column("execution_id", sa.String(36), primary_key=True),
    sa.Column("schedule_id", sa.BigInteger(), nullable=False),
    sa.Column("config_id", sa.BigInteger(), nullable=False),
    sa.Column("scheduled_for", UTCDateTime(), nullable=False),
    sa.Column("status", sa.String(16), nullable=False, server_default=sa.text("'WAITING'")),
    sa.Column("waiting_for", sa.Text(), nullable=True),
    sa.Column("deadline_at", UTCDateTime(), nullable=False),
    sa.Column("next_check_at", UTCDateTime(), nullable=False),
    sa.Column("checks", sa.Integer(), nullable=False, server_default=sa.text("0")),
    sa.Column("last_result", sa.Text(), nullable=True),
    sa.Column("node_id", sa.String(64), nullable=True),
    sa.Column("lease_until", UTCDateTime(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False, server_default=utcnow()),
    sa.Column("decided_at", UTCDateTime(), nullable=True),
    sa.Index("ix_report_waits_due", "status", "next_check_at"),
)

alert_states = sa.Table(
    # revision 0014: a report's alert state (last truth, last delivered file) across nodes
    "report_alert_states",
    metadata,
    sa.Column("config_id", sa.BigInteger(), primary_key=True),
    sa.Column("last_truth", sa.Boolean(), nullable=True),
    sa.Column("last_execution_id", sa.String(36), nullable=True),
    sa.Column("delivered_sha256", sa.String(64), nullable=True),
    sa.Column("delivered_execution_id", sa.String(36), nullable=True),
    sa.Column("updated_at", UTCDateTime(), nullable=False, server_default=utcnow()),
)

late_fires = sa.Table(
    # revision 0015: a fire judged late (past its schedule's deadline); the row is its claim,
    # so the fire is counted once however many nodes watch the deadline
    "report_late_fires",
    metadata,
    sa.Column("schedule_id", sa.BigInteger(), primary_key=True),
    sa.Column("scheduled_for", UTCDateTime(), primary_key=True),
    sa.Column("config_id", sa.BigInteger(), nullable=False),
    sa.Column("execution_id", sa.String(36), nullable=True),
    sa.Column("node_id", sa.String(64), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False, server_default=utcnow()),
)

DEFINITION_TABLES = (datasources, configs, schedules, deliveries, recipients)
WATCHED_TABLES = (*DEFINITION_TABLES, calendars)
"""What the definitions watcher fingerprints: an edited calendar reloads its schedules too."""

__all__ = [
    "DEFINITION_TABLES",
    "WATCHED_TABLES",
    "alert_states",
    "audience_drivers",
    "audiences",
    "backfill_fires",
    "backfills",
    "bursts",
    "calendars",
    "configs",
    "datasources",
    "deliveries",
    "delivery_logs",
    "executions",
    "late_fires",
    "metadata",
    "nodes",
    "notices",
    "recipients",
    "schedules",
    "utcnow",
    "waits",
]
