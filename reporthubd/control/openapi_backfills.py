"""The OpenAPI description of backfills (control/backfills.py) and waiting runs
(control/waits.py): paths and schemas, merged into `openapi.spec()`. The rules are in
scheduler/backfill.py and waits.py; docs/authors.md states them for people."""

from __future__ import annotations

from typing import Any

from reporthubd.control.openapi_schedules import PROTECTED, SCHEDULE_ID, _error, _ok, _ref

JSON = "application/json"
DATETIME = {"type": "string", "format": "date-time"}
TAG = "backfills"
BACKFILL_ID = {
    "name": "backfill_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[0-9A-Za-z-]{1,36}$"},
}
BY = {"type": "string", "minLength": 1, "maxLength": 255, "pattern": r"\S"}
# An ISO date, or a date-time with an optional offset (the days a month always has, so that
# every matching text is a real date).
WHEN = {
    "type": "string",
    "pattern": (
        r"^(19|20)\d\d-(0[1-9]|1[0-2])-(0[1-9]|1\d|2[0-8])"
        r"(T([01]\d|2[0-3]):[0-5]\d(:[0-5]\d)?(Z|[+-](0\d|1[0-3]):[0-5]\d)?)?$"
    ),
}

PATHS: dict[str, Any] = {
    "/api/schedules/{schedule_id}/backfill": {
        "post": {
            "operationId": "request_backfill",
            "tags": [TAG],
            "summary": "Run a schedule's fires over a past range, each with its logical time",
            "description": (
                "The fires are the cron's in the schedule's zone (across DST as the live "
                "scheduler fires them) under its business calendar (a skipped holiday is not "
                "run). `reprocess` chooses among them: none (fires that never ran), failed (and "
                "those whose latest attempt ended FAILED, TIMEOUT or CANCELLED), all. A fire "
                "with no run is claimed with the schedule's own key (attempt 0), a re-run takes "
                "the next attempt, so the live scheduler and a backfill never double a fire. "
                "`from`/`to`: ISO dates or date-times, wall time in the schedule's zone unless "
                "they carry an offset; a date `to` takes the whole day; `to` is cut to now. A "
                "dry run answers the plan and records nothing; otherwise a node takes the "
                "backfill on (201), and GET /api/backfills/{backfill_id} follows it."
            ),
            "parameters": [SCHEDULE_ID],
            "requestBody": {
                "required": True,
                "content": {JSON: {"schema": _ref("BackfillRequest")}},
            },
            "responses": {
                "200": _ok("a dry run, or nothing to run: the plan", _ref("BackfillPlan")),
                "201": _ok("recorded: the plan and the backfill's id", _ref("BackfillPlan")),
                "400": _error(
                    "bad input, naming the key: from after to, a range wider than "
                    "scheduler.backfill_max_days, an unknown reprocess, a concurrency over the "
                    "pool, an unknown key"
                ),
                "404": _error("unknown schedule"),
                "409": _error("another open backfill of the schedule overlaps the range"),
                **PROTECTED,
            },
        }
    },
    "/api/backfills": {
        "get": {
            "operationId": "list_backfills",
            "tags": [TAG],
            "summary": "The latest backfills (open ones first), with their progress",
            "parameters": [
                {
                    "name": "schedule_id",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "integer", "minimum": 1},
                }
            ],
            "responses": {
                "200": _ok(
                    "the backfills",
                    {
                        "type": "object",
                        "required": ["backfills"],
                        "properties": {
                            "backfills": {"type": "array", "items": _ref("BackfillProgress")}
                        },
                    },
                ),
                "400": _error("bad schedule_id"),
                **PROTECTED,
            },
        }
    },
    "/api/backfills/{backfill_id}": {
        "get": {
            "operationId": "get_backfill",
            "tags": [TAG],
            "summary": "A backfill's progress: done, total, failed, running",
            "parameters": [BACKFILL_ID],
            "responses": {
                "200": _ok("its progress", _ref("BackfillProgress")),
                "400": _error("bad backfill_id"),
                "404": _error("unknown backfill"),
                **PROTECTED,
            },
        }
    },
    "/api/backfills/{backfill_id}/cancel": {
        "post": {
            "operationId": "cancel_backfill",
            "tags": [TAG],
            "summary": "Stop a backfill: no more fires start; its started runs are cancelled",
            "parameters": [BACKFILL_ID],
            "requestBody": {
                "required": False,
                "content": {
                    JSON: {
                        "schema": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {"by": BY},
                        }
                    }
                },
            },
            "responses": {
                "200": _ok("cancelled", _ref("BackfillProgress")),
                "400": _error("bad input (the key is named)"),
                "404": _error("unknown backfill"),
                "409": _error("the backfill has already ended"),
                **PROTECTED,
            },
        }
    },
    "/api/waits": {
        "get": {
            "operationId": "list_waits",
            "tags": [TAG],
            "summary": "The runs waiting for their dependencies or readiness probe",
            "description": (
                "A scheduled run of a schedule with depends_on or readiness_query waits, "
                "holding no pool slot, until the reports it depends on COMPLETED for the same "
                "local day (in its zone) and the probe returns true, or until wait_deadline "
                "(then wait_policy: skip or run_anyway). docs/authors.md has the rules."
            ),
            "responses": {
                "200": _ok(
                    "the waiting runs, oldest first",
                    {
                        "type": "object",
                        "required": ["waits"],
                        "properties": {"waits": {"type": "array", "items": _ref("Wait")}},
                    },
                ),
                **PROTECTED,
            },
        }
    },
}

_FIRE = {
    "type": "object",
    "required": ["scheduled_for", "local", "run", "reason"],
    "properties": {
        "scheduled_for": DATETIME,
        "local": {"type": "string", "description": "wall time in the schedule's zone"},
        "run": {"type": "boolean"},
        "reason": {"type": "string"},
        "attempt": {"type": "integer", "description": "0: the fire's own claim"},
        "calendar_shift": {"type": "string"},
    },
}

SCHEMAS: dict[str, Any] = {
    "Wait": {
        "type": "object",
        "required": ["execution_id", "schedule_id", "status", "waiting_for", "deadline_at"],
        "properties": {
            "execution_id": {"type": "string"},
            "schedule_id": {"type": "integer"},
            "config_id": {"type": "integer"},
            "scheduled_for": DATETIME,
            "status": {"enum": ["WAITING", "RELEASED", "EXPIRED"]},
            "waiting_for": {"type": ["string", "null"]},
            "deadline_at": DATETIME,
            "next_check_at": DATETIME,
            "checks": {"type": "integer"},
            "last_result": {"type": ["string", "null"]},
            "node_id": {"type": ["string", "null"]},
        },
    },
    "BackfillRequest": {
        "type": "object",
        "required": ["from", "to"],
        "additionalProperties": False,
        "properties": {
            "from": {**WHEN, "examples": ["2026-03-01", "2026-03-01T06:00"]},
            "to": {**WHEN, "examples": ["2026-03-28"]},
            "reprocess": {"enum": ["none", "failed", "all"], "default": "none"},
            "dry_run": {"type": "boolean", "default": False},
            "deliver": {"type": "boolean", "default": True},
            "concurrency": {"type": "integer", "minimum": 1, "default": 1},
            "by": BY,
        },
    },
    "BackfillFire": _FIRE,
    "BackfillPlan": {
        "type": "object",
        "required": ["backfill_id", "dry_run", "schedule_id", "from", "to", "fires", "to_run"],
        "properties": {
            "backfill_id": {"type": ["string", "null"]},
            "dry_run": {"type": "boolean"},
            "deliver": {"type": "boolean"},
            "concurrency": {"type": "integer"},
            "schedule_id": {"type": "integer"},
            "from": DATETIME,
            "to": {**DATETIME, "description": "exclusive"},
            "to_is_exclusive": {"type": "boolean"},
            "clipped_to_now": {"type": "boolean"},
            "reprocess": {"enum": ["none", "failed", "all"]},
            "fires": {"type": "integer"},
            "to_run": {"type": "integer"},
            "runs": {"type": "array", "items": _ref("BackfillFire")},
            "not_run": {"type": "array", "items": _ref("BackfillFire")},
        },
    },
    "BackfillProgress": {
        "type": "object",
        "required": ["id", "schedule_id", "status", "total", "done", "failed", "running"],
        "properties": {
            "id": {"type": "string"},
            "schedule_id": {"type": "integer"},
            "config_id": {"type": "integer"},
            "from": DATETIME,
            "to": DATETIME,
            "reprocess": {"enum": ["none", "failed", "all"]},
            "deliver": {"type": "boolean"},
            "concurrency": {"type": "integer"},
            "status": {"enum": ["PENDING", "RUNNING", "COMPLETED", "CANCELLED", "FAILED"]},
            "total": {"type": "integer"},
            "done": {"type": "integer"},
            "failed": {"type": "integer"},
            "running": {"type": "integer"},
            "fires_by_status": {"type": "object", "additionalProperties": {"type": "integer"}},
            "requested_by": {"type": ["string", "null"]},
            "node_id": {"type": ["string", "null"]},
            "error_message": {"type": ["string", "null"]},
            "cancelled_by": {"type": ["string", "null"]},
            "created_at": DATETIME,
            "finished_at": {"anyOf": [DATETIME, {"type": "null"}]},
        },
    },
}
