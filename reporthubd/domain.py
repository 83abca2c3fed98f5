"""Domain records: what the store's rows mean once validated.

Records are frozen, keyword-only dataclasses; strings from the database are converted once, at
the edge (store/rows.py), into zones, enums and mappings. The vocabularies below are part of the
store contract (ARCHITECTURE.md): other services write these strings.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from reporthubd import calendars, waits


class DatasourceType(enum.StrEnum):
    MYSQL = "mysql"
    POSTGRESQL = "postgresql"
    ORACLE = "oracle"
    SQLSERVER = "sqlserver"
    MONGODB = "mongodb"
    BIGQUERY = "bigquery"
    SNOWFLAKE = "snowflake"
    SQLITE = "sqlite"


class OutputFormat(enum.StrEnum):
    CSV = "csv"
    EXCEL = "excel"
    JSON = "json"
    PDF = "pdf"


class DeliveryMethod(enum.StrEnum):
    EMAIL = "email"
    SFTP = "sftp"
    S3 = "s3"
    WEBHOOK = "webhook"
    FILE_SHARE = "file_share"
    SLACK = "slack"
    TEAMS = "teams"
    GOOGLE_CHAT = "google_chat"


class MisfirePolicy(enum.StrEnum):
    RUN_ONCE = "run_once"
    SKIP = "skip"
    RUN_ALL = "run_all"


class EmptyResultPolicy(enum.StrEnum):
    DELIVER = "deliver"
    SKIP = "skip"


class RecipientType(enum.StrEnum):
    TO = "to"
    CC = "cc"
    BCC = "bcc"


class TriggerType(enum.StrEnum):
    SCHEDULE = "schedule"
    MANUAL = "manual"
    RETRY = "retry"
    RECOVERY = "recovery"
    BACKFILL = "backfill"
    AUDIENCE = "audience"
    """One audience's child run of a data-driven run (report_audiences)."""


class ExecutionStatus(enum.StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    PARTIAL = "PARTIAL"
    FAILED = "FAILED"
    TIMEOUT = "TIMEOUT"
    CANCELLED = "CANCELLED"
    SKIPPED = "SKIPPED"

    @property
    def is_terminal(self) -> bool:
        return self not in {ExecutionStatus.PENDING, ExecutionStatus.RUNNING}


class Transition(enum.StrEnum):
    """The named state changes of an execution (reporthubd/lifecycle/executions.py makes them)."""

    CREATED = "created"
    """A new row: a fire claimed to run, a manual or recovery run (PENDING), or a fire claimed
    as SKIPPED with its reason."""
    ADOPTED = "adopted"
    """A queued run of a node that stopped or was lost, taken over by this node (stays PENDING)."""
    STARTED = "started"
    FINISHED = "finished"
    """The run's own outcome: its file written and its deliveries made (or none to make), all
    of them (COMPLETED) or some (PARTIAL); a run that failed takes FAILED."""
    FAILED = "failed"
    """It could not run (definitions missing or invalid) or failed while running."""
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    MARKED_LOST = "marked_lost"
    """Another node (or this node's next process) found no live node owning it."""
    SETTLED = "settled"
    """Its last pending delivery retry was made: the final status from the delivery ledger."""
    REOPENED = "reopened"
    """A finished run whose failed deliveries are made again (redelivery)."""
    WAIT_EXPIRED = "wait_expired"
    """A run that waited for its dependencies or readiness probe past its deadline, under
    wait_policy skip (reporthubd/waits.py): recorded SKIPPED with what it waited for."""


_S = ExecutionStatus
_ENDS = frozenset({_S.COMPLETED, _S.PARTIAL, _S.FAILED})

TRANSITIONS: Mapping[
    Transition, tuple[frozenset[ExecutionStatus | None], frozenset[ExecutionStatus]]
]
"""Per transition: the statuses it may leave (None: the row does not exist yet) and the
statuses it may reach. Everything else is refused (lifecycle.executions.TransitionRefused)."""
TRANSITIONS = {
    Transition.CREATED: (frozenset({None}), frozenset({_S.PENDING, _S.SKIPPED})),
    Transition.ADOPTED: (frozenset({_S.PENDING}), frozenset({_S.PENDING})),
    Transition.STARTED: (frozenset({_S.PENDING}), frozenset({_S.RUNNING})),
    Transition.FINISHED: (frozenset({_S.RUNNING}), frozenset({_S.COMPLETED, _S.PARTIAL})),
    Transition.FAILED: (frozenset({_S.PENDING, _S.RUNNING}), frozenset({_S.FAILED})),
    Transition.TIMED_OUT: (frozenset({_S.RUNNING}), frozenset({_S.TIMEOUT})),
    Transition.CANCELLED: (frozenset({_S.PENDING, _S.RUNNING}), frozenset({_S.CANCELLED})),
    Transition.WAIT_EXPIRED: (frozenset({_S.PENDING}), frozenset({_S.SKIPPED})),
    Transition.MARKED_LOST: (frozenset({_S.PENDING, _S.RUNNING}), frozenset({_S.FAILED})),
    Transition.SETTLED: (frozenset({_S.RUNNING}), _ENDS),
    Transition.REOPENED: (_ENDS, frozenset({_S.RUNNING})),
}


def allowed(transition: Transition, old: ExecutionStatus | None, new: ExecutionStatus) -> bool:
    """Whether `transition` may move an execution from `old` to `new`."""
    sources, targets = TRANSITIONS[transition]
    return old in sources and new in targets


class OwnershipLost(Exception):
    """This node no longer owns the run (another node marked it lost, or it ended): the side
    effect at hand must not happen. Raised by lifecycle.fencing, through any layer."""


class DeliveryStatus(enum.StrEnum):
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    RETRYING = "RETRYING"
    SKIPPED = "SKIPPED"


# Keys accepted inside the JSON columns (ARCHITECTURE.md, "The store contract"). More may be
# accepted by a plugin; `reporthubd check` reports keys outside these sets.
CONNECTION_KEYS: Mapping[DatasourceType, frozenset[str]] = {
    DatasourceType.MYSQL: frozenset(
        {"host", "port", "database", "username", "password", "ssl", "options"}
    ),
    DatasourceType.POSTGRESQL: frozenset(
        {"host", "port", "database", "username", "password", "ssl", "options"}
    ),
    DatasourceType.SQLITE: frozenset({"path"}),
    DatasourceType.ORACLE: frozenset(
        {"host", "port", "service_name", "dsn", "username", "password", "wallet", "options"}
    ),
    DatasourceType.SQLSERVER: frozenset(
        {
            "host",
            "port",
            "database",
            "username",
            "password",
            "driver",
            "encrypt",
            "trust_server_certificate",
            "options",
        }
    ),
    DatasourceType.MONGODB: frozenset(
        {"uri", "host", "port", "username", "password", "database", "options"}
    ),
    DatasourceType.BIGQUERY: frozenset(
        {
            "project",
            "location",
            "credentials_file",
            "credentials_json",
            "maximum_bytes_billed",
            "options",
        }
    ),
    DatasourceType.SNOWFLAKE: frozenset(
        {
            "account",
            "username",
            "password",
            "private_key_file",
            "warehouse",
            "database",
            "schema",
            "role",
            "options",
        }
    ),
}

DELIVERY_KEYS: Mapping[DeliveryMethod, frozenset[str]] = {
    DeliveryMethod.EMAIL: frozenset(
        {
            "subject",
            "body",
            "max_attachment_mb",
            "smtp",
            "preview_rows",
            "oversize",
            "reply_to",
            "from_address",
        }
    ),
    DeliveryMethod.SFTP: frozenset(
        {
            "host",
            "port",
            "username",
            "password",
            "private_key_file",
            "private_key",
            "passphrase",
            "known_hosts",
            "host_key",
            "remote_dir",
            "file_name",
            "timeout_seconds",
            "insecure_skip_host_key_check",
        }
    ),
    DeliveryMethod.S3: frozenset(
        {
            "bucket",
            "key",
            "region",
            "endpoint_url",
            "access_key_id",
            "secret_access_key",
            "sse",
            "kms_key_id",
            "storage_class",
            "presign_seconds",
            "content_type",
            "multipart_threshold_mb",
        }
    ),
    DeliveryMethod.WEBHOOK: frozenset(
        {"url", "method", "headers", "mode", "secret", "timeout_seconds", "verify_tls"}
        | {"body", "content_type", "signature"}
    ),
    DeliveryMethod.FILE_SHARE: frozenset({"path", "sub_path", "overwrite", "file_mode"}),
    # Chat deliveries (reporthubd/deliverers/chat.py has the keys they share).
    DeliveryMethod.SLACK: frozenset(
        {"token", "channel", "base_url", "max_file_mb", "oversize", "rate_limit_retries"}
        | {"max_wait_seconds", "title", "text", "preview_rows", "link_url", "timeout_seconds"}
        | {"link_store"}
    ),
    DeliveryMethod.TEAMS: frozenset(
        {"url", "title", "text", "preview_rows", "link_url", "require_link", "timeout_seconds"}
        | {"verify_tls", "link_store"}
    ),
    DeliveryMethod.GOOGLE_CHAT: frozenset(
        {"url", "title", "text", "preview_rows", "link_url", "require_link", "timeout_seconds"}
        | {"verify_tls", "thread_key", "link_store"}
    ),
}

DELIVERY_SECRET_KEYS: Mapping[DeliveryMethod, frozenset[str]] = {
    DeliveryMethod.TEAMS: frozenset({"url"}),
    DeliveryMethod.GOOGLE_CHAT: frozenset({"url"}),
}
"""Keys holding a credential although their name does not look like one (a chat webhook's URL
carries its token in the query): `export` masks them, `apply` keeps the stored value for "***"."""


@dataclass(frozen=True, kw_only=True)
class Datasource:
    id: int
    name: str
    type: DatasourceType
    connection_config: Mapping[str, Any]
    max_concurrent_queries: int | None = None
    is_active: bool = True
    updated_at: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class ReportConfig:
    id: int
    name: str
    description: str | None
    datasource_id: int
    query_text: str
    parameters: Mapping[str, Any]
    output_format: OutputFormat
    format_options: Mapping[str, Any]
    file_name_template: str | None
    timeout_seconds: float | None
    max_rows: int | None
    empty_result_policy: EmptyResultPolicy
    is_active: bool = True
    updated_at: datetime | None = None
    alert: Mapping[str, Any] | None = None
    """The conditional alert as stored (report_configs.alert; engine/alerting.py parses it)."""


@dataclass(frozen=True, kw_only=True)
class Schedule:
    id: int
    config_id: int
    cron_expression: str
    timezone: ZoneInfo
    timezone_name: str | None
    """As stored; None means the configured default (already applied in `timezone`)."""
    parameters: Mapping[str, Any]
    misfire_policy: MisfirePolicy
    misfire_grace_seconds: int | None
    start_at: datetime | None
    end_at: datetime | None
    is_active: bool = True
    last_run_at: datetime | None = None
    next_run_at: datetime | None = None
    updated_at: datetime | None = None
    calendar_name: str | None = None
    """The business calendar it follows (report_calendars.name), with `calendar_policy`."""
    calendar_policy: calendars.CalendarPolicy | None = None
    calendar: calendars.Calendar | None = None
    """`calendar_name` resolved by the store (None: no calendar, or not resolved yet)."""
    paused_at: datetime | None = None
    """Set while the schedule is paused (its fires are recorded SKIPPED), with who and why."""
    paused_by: str | None = None
    paused_reason: str | None = None
    resumed_at: datetime | None = None
    """The latest resumption: fires before it that were missed are never caught up."""
    resumed_by: str | None = None
    waits: waits.WaitRule | None = None
    """What its runs wait for before they run (depends_on, readiness_query): reporthubd/waits.py."""


@dataclass(frozen=True, kw_only=True)
class Recipient:
    id: int
    delivery_id: int
    recipient_type: RecipientType
    email: str
    name: str | None


@dataclass(frozen=True, kw_only=True)
class Delivery:
    id: int
    config_id: int
    name: str | None
    method: DeliveryMethod
    delivery_config: Mapping[str, Any]
    max_retry: int
    retry_interval_minutes: float
    recipients: tuple[Recipient, ...] = ()
    is_active: bool = True
    updated_at: datetime | None = None


@dataclass(frozen=True, kw_only=True)
class Execution:
    id: str
    config_id: int
    schedule_id: int | None
    trigger_type: TriggerType
    scheduled_for: datetime | None
    status: ExecutionStatus
    parameters: Mapping[str, Any] = field(default_factory=dict)
    node_id: str | None = None
    heartbeat_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    row_count: int | None = None
    file_name: str | None = None
    file_path: str | None = None
    file_size: int | None = None
    file_sha256: str | None = None
    error_message: str | None = None
    created_at: datetime | None = None
    recovers_id: str | None = None
    """For a recovery run: the run it stands in for (the first of the chain)."""
    shifted_to: datetime | None = None
    """A fire its business calendar moved: the instant it was claimed to run at (its
    `scheduled_for` stays the logical fire)."""
    shift_reason: str | None = None
    alert_value: str | None = None
    """A report with a conditional alert: the condition's value, the decision (deliver, skip,
    resolved) and why (engine/alerting.py); a run not sent is COMPLETED with this reason."""
    alert_decision: str | None = None
    alert_reason: str | None = None
    attempt: int = 0
    """Which attempt of its fire (schedule_id, scheduled_for) this run is: 0 is the schedule's
    own claim; recoveries, backfill re-runs and re-runs take the next ones."""


@dataclass(frozen=True, kw_only=True)
class RowError:
    """A row that could not be turned into a record; names the row, never crashes the reader."""

    table: str
    row_id: object
    problems: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.table} id={self.row_id}: " + "; ".join(self.problems)


def execution_data(execution: Execution) -> dict[str, Any]:
    """An execution as JSON-ready data (times in ISO 8601, enums as their values): the API's
    and `reporthubd execute --json`'s record of a run."""
    data = asdict(execution)
    for key, value in list(data.items()):
        if isinstance(value, datetime):
            data[key] = value.isoformat()
        elif isinstance(value, enum.Enum):
            data[key] = value.value
    data["parameters"] = dict(execution.parameters)
    return data
