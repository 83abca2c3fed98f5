"""Parts of the OpenAPI description (openapi.py): the operationId and tag of every operation,
the media types of downloads, and the component schemas of the answers, so that a generated
client has a name, a module and a typed model for each."""

from __future__ import annotations

from typing import Any

from reporthubd.control import openapi_schedules

JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


# Media types of the files GET /api/execution/{id}/file answers with (its Content-Type header
# names the one of the file served): the four formats, JSON Lines, compressed CSV, and
# octet-stream for a file of no known kind. Octet-stream comes first: a generated client reads
# the body as the first type it knows says (openapi-python-client: bytes, not text for CSV).
CSV_UTF8 = "text/csv; charset=utf-8"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
DOWNLOAD_TYPES = (
    "application/octet-stream",
    XLSX,
    CSV_UTF8,
    "application/pdf",
    JSON,
    "application/x-ndjson",
    "application/gzip",
    "application/zip",
)

# operationId and tag of every operation: what a generated client names its functions and
# modules after. An operation missing here is named from its method and path (`name_operations`).
TAGS = {
    "daemon": "Liveness, readiness, metrics, the status page and this description",
    "executions": "Run reports, read the history, cancel, download the file",
    "deliveries": "Redeliver and test deliveries",
    "datasources": "Test datasources",
    "scheduler": "The scheduler's state and reload",
    "schedules": "One schedule: trigger, next fires, pause and resume",
    "backfills": "Run a schedule's past fires over a range: plan, progress, cancel",
    "console": "The operator console: its shell, page fragments and live events",
    "notices": "Who was told what about a report's runs, and who will be (issue 17)",
}
OPERATIONS: dict[tuple[str, str], tuple[str, str]] = {
    ("get", "/"): ("status_page", "daemon"),
    ("get", "/healthz"): ("health", "daemon"),
    ("get", "/readyz"): ("readiness", "daemon"),
    ("get", "/metrics"): ("metrics", "daemon"),
    ("get", "/api/openapi.json"): ("openapi_description", "daemon"),
    ("post", "/api/execute/{config_id}"): ("execute_report", "executions"),
    ("post", "/execution_engine/api/execute/{config_id}"): (
        "execute_report_seed_path",
        "executions",
    ),
    ("get", "/api/execution/{execution_id}"): ("get_execution", "executions"),
    ("get", "/api/executions"): ("list_executions", "executions"),
    ("post", "/api/execution/{execution_id}/cancel"): ("cancel_execution", "executions"),
    ("post", "/api/execution/{execution_id}/rerun"): ("rerun_execution", "executions"),
    ("get", "/api/execution/{execution_id}/file"): ("download_execution_file", "executions"),
    ("post", "/api/execution/{execution_id}/redeliver"): ("redeliver_execution", "deliveries"),
    ("post", "/api/test-delivery/{delivery_id}"): ("test_delivery", "deliveries"),
    ("post", "/api/test-datasource/{datasource_id}"): ("test_datasource", "datasources"),
    ("get", "/api/scheduler/status"): ("scheduler_status", "scheduler"),
    ("get", "/api/scheduler/jobs"): ("scheduler_jobs", "scheduler"),
    ("post", "/api/scheduler/reload"): ("reload_scheduler", "scheduler"),
    ("post", "/api/scheduler/trigger/{schedule_id}"): ("trigger_schedule", "schedules"),
    ("get", "/api/schedules/{schedule_id}/next"): ("next_fires", "schedules"),
    ("post", "/api/schedules/{schedule_id}/pause"): ("pause_schedule", "schedules"),
    ("post", "/api/schedules/{schedule_id}/resume"): ("resume_schedule", "schedules"),
}


def name_operations(paths: dict[str, Any]) -> dict[str, Any]:
    """Give every operation of `paths` its operationId and tag (OPERATIONS; else derived from
    the method and path: `post_api_things_id_go`, tagged with the path's first word after
    /api). Returns `paths`."""
    for path, operations in paths.items():
        for method, operation in operations.items():
            words = [w.strip("{}").replace("-", "_").replace(".", "_") for w in path.split("/")]
            words = [w for w in words if w]
            derived = "_".join([method, *words])
            tag = words[1] if len(words) > 1 and words[0] == "api" else "daemon"
            name, tag = OPERATIONS.get((method, path), (derived, tag))
            operation.setdefault("operationId", name)
            operation.setdefault("tags", [tag])
    return paths


EXECUTION = {
    "type": "object",
    "required": ["id", "config_id", "status", "trigger_type"],
    "properties": {
        "id": {"type": "string"},
        "config_id": {"type": "integer"},
        "schedule_id": {"type": ["integer", "null"]},
        "trigger_type": {
            "enum": ["schedule", "manual", "retry", "recovery", "audience", "backfill"]
        },
        "scheduled_for": {"type": ["string", "null"], "format": "date-time"},
        "status": {
            "enum": [
                "PENDING",
                "RUNNING",
                "COMPLETED",
                "PARTIAL",
                "FAILED",
                "TIMEOUT",
                "CANCELLED",
                "SKIPPED",
            ]
        },
        "parameters": {"type": "object"},
        "node_id": {"type": ["string", "null"]},
        "started_at": {"type": ["string", "null"], "format": "date-time"},
        "finished_at": {"type": ["string", "null"], "format": "date-time"},
        "row_count": {"type": ["integer", "null"]},
        "file_name": {"type": ["string", "null"]},
        "file_size": {"type": ["integer", "null"]},
        "file_sha256": {"type": ["string", "null"]},
        "error_message": {"type": ["string", "null"]},
        "shifted_to": {
            "type": ["string", "null"],
            "format": "date-time",
            "description": "A fire its business calendar moved (next_business_day or "
            "previous_business_day): when it ran; scheduled_for stays the logical fire",
        },
        "shift_reason": {
            "type": ["string", "null"],
            "description": "Why and where to, e.g. 'holiday: Good Friday, de-berlin; "
            "next_business_day: runs 2027-03-30 09:00 Europe/Berlin'. A fire the calendar "
            "skips is SKIPPED with error_message 'holiday: <name>, <calendar>'",
        },
        "alert_value": {
            "type": ["string", "null"],
            "description": "A report with a conditional alert (report_configs.alert): the "
            "condition's value for this run (row count, aggregate, any/all rows' truth)",
        },
        "alert_decision": {
            "enum": ["deliver", "skip", "resolved", None],
            "description": "deliver: sent; skip: not sent (COMPLETED, each delivery SKIPPED "
            "with the reason); resolved: on_transition turned false, not sent, one 'resolved' "
            "notice to the report's deliveries",
        },
        "attempt": {
            "type": "integer",
            "description": "Which attempt of its fire this run is: 0 is the schedule's own "
            "claim; recoveries, backfills' re-runs and POST /api/execution/{id}/rerun take the "
            "next ones",
        },
        "alert_reason": {
            "type": ["string", "null"],
            "description": "Why, e.g. 'when_true: row_count > 0 does not hold' or 'on_change: "
            "same content as the previous delivered run'",
        },
        "deliveries": {
            "type": "array",
            "description": "GET /api/execution/{id} only: the delivery ledger",
            "items": {
                "type": "object",
                "required": ["delivery_id", "attempts"],
                "properties": {
                    "delivery_id": {"type": "integer"},
                    "attempts": {"type": "array", "items": {"type": "object"}},
                },
            },
        },
    },
}


_MS = {"type": ["number", "null"]}
LATENESS = {
    "type": "object",
    "description": "Claim committed minus due time, in ms, since the scheduler started",
    "required": ["fires", "p50_ms", "p99_ms", "max_ms"],
    "properties": {"fires": {"type": "integer"}, "p50_ms": _MS, "p99_ms": _MS, "max_ms": _MS},
}
_NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
_NULLABLE_TEXT = {"type": ["string", "null"]}
JOB = {
    "type": "object",
    "description": "A schedule as the scheduler holds it: loaded, or refused (`disabled` says "
    "why, and only the first five fields are present)",
    "required": ["schedule_id", "disabled", "last_fire", "last_status", "last_execution_id"],
    "properties": {
        "schedule_id": {"type": "integer"},
        "disabled": _NULLABLE_TEXT,
        "last_fire": _NULLABLE_TIME,
        "last_status": _NULLABLE_TEXT,
        "last_execution_id": _NULLABLE_TEXT,
        "config_id": {"type": "integer"},
        "config_name": _NULLABLE_TEXT,
        "cron_expression": {"type": "string"},
        "timezone": {"type": "string"},
        "misfire_policy": {"type": "string"},
        "calendar": {
            "type": ["string", "null"],
            "description": "The business calendar it follows (report_calendars.name)",
        },
        "calendar_policy": {"enum": ["skip", "next_business_day", "previous_business_day", None]},
        "misfire_grace_seconds": {"type": ["integer", "null"]},
        "start_at": _NULLABLE_TIME,
        "end_at": _NULLABLE_TIME,
        "parameters": {"type": "object"},
        "next_fire": _NULLABLE_TIME,
        "next_fire_local": _NULLABLE_TIME,
        "paused": openapi_schedules.JOB_PAUSED,
    },
}
RELOADED = {
    "type": "object",
    "required": ["at", "ok", "added", "changed", "removed", "disabled"],
    "properties": {
        "at": {"type": "string", "format": "date-time"},
        "ok": {"type": "boolean"},
        **{count: {"type": "integer"} for count in ("added", "changed", "removed", "disabled")},
    },
}
NEXT_FIRES = {
    "type": "object",
    "required": ["schedule_id", "timezone", "fires"],
    "properties": {
        "schedule_id": {"type": "integer"},
        "timezone": {"type": "string"},
        "fires": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["utc", "local"],
                "properties": {
                    "utc": {"type": "string", "format": "date-time"},
                    "local": {"type": "string", "format": "date-time"},
                    "status": {
                        "enum": ["run", "skipped", "shifted"],
                        "description": "A schedule with a business calendar only: what its "
                        "calendar does with this fire (utc/local stay the logical fire)",
                    },
                    "reason": {
                        "type": "string",
                        "description": "Skipped or shifted: 'holiday: <name>, <calendar>'",
                    },
                    "runs_utc": {"type": "string", "format": "date-time"},
                    "runs_local": {"type": "string", "format": "date-time"},
                },
            },
        },
    },
}
SCHEDULER_STATUS = {
    "type": "object",
    "required": [
        "node_id",
        "started_at",
        "uptime_seconds",
        "schedules_loaded",
        "fire_lateness",
        "catch_up_lateness",
        "executions",
    ],
    "properties": {
        "node_id": {"type": "string"},
        "started_at": {"type": "string", "format": "date-time"},
        "uptime_seconds": {"type": "number"},
        "schedules_loaded": {"type": "integer"},
        "timelines": {"type": "integer"},
        "schedules_disabled": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["schedule_id", "reason"],
                "properties": {"schedule_id": {"type": "integer"}, "reason": {"type": "string"}},
            },
        },
        "next_fire": {
            "type": ["object", "null"],
            "properties": {
                "at": {"type": "string", "format": "date-time"},
                "schedules": {"type": "integer"},
            },
        },
        "last_reload": {"type": ["object", "null"]},
        "fire_lateness": {
            **_ref("Lateness"),
            "description": "Fires claimed while due: the scheduler's own promptness",
        },
        "catch_up_lateness": {
            **_ref("Lateness"),
            "description": "Fires due before the scheduler started, or decided more than 5 s "
            "late (store down, loop blocked), run late by their misfire policy",
        },
        "claimed": {"type": "integer"},
        "skipped": {"type": "integer"},
        "recovered": {"type": "integer"},
        "adopted": {"type": "integer"},
        "store_down_since": _NULLABLE_TIME,
        "executions": {
            "type": "object",
            "properties": {
                "running": {"type": "integer"},
                "queued": {"type": "integer"},
                "all_nodes": {"type": "object"},
                "store_error": {"type": ["string", "null"]},
            },
        },
    },
}
