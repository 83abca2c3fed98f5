"""The OpenAPI description of notices (control/notices.py, issue 17): the ledger's paths and
schemas, and a report's notification settings as the catalog writes them (ReportNotify,
NotifyRule) with a schedule's deadline, merged into `openapi.spec()`."""

from __future__ import annotations

from typing import Any

from reporthubd.control.params import MAX_ID
from reporthubd.notify_rules import Event

JSON = "application/json"
DATETIME = {"type": "string", "format": "date-time"}
NULLABLE_DATETIME = {"anyOf": [DATETIME, {"type": "null"}]}
TAG = "notices"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _ok(description: str, data: dict[str, Any]) -> dict[str, Any]:
    envelope = {
        "type": "object",
        "required": ["status", "message", "data"],
        "properties": {
            "status": {"const": "success"},
            "message": {"type": "string"},
            "data": data,
        },
    }
    return {"description": description, "content": {JSON: {"schema": envelope}}}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": _ref("Error")}}}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


ID = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
STATUS = {"enum": ["PENDING", "SENDING", "SENT", "RETRYING", "FAILED"]}
PROTECTED = {
    "401": _error("no bearer token (when tokens are configured)"),
    "403": _error("the token is not valid"),
}

PATHS: dict[str, Any] = {
    "/api/notices": {
        "get": {
            "operationId": "list_notices",
            "tags": [TAG],
            "summary": "The notice ledger: who was told what about which run, when, and how",
            "description": (
                "Newest first. One row per notice to one target: recorded once per incident "
                "across nodes, sent exactly once (status SENT), retried (RETRYING with "
                "next_attempt_at) or given up (FAILED with the error)."
            ),
            "parameters": [
                _query(
                    "execution_id", {"type": "string", "minLength": 1, "maxLength": 36}, "the run"
                ),
                _query("config_id", ID, "the report"),
                _query("schedule_id", ID, "the schedule"),
                _query(
                    "incident_key",
                    {"type": "string", "minLength": 1, "maxLength": 255},
                    "the incident",
                ),
                _query("status", STATUS, "the notice's status"),
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 500}, "at most"),
            ],
            "responses": {
                "200": _ok(
                    "notices",
                    {
                        "type": "object",
                        "required": ["notices"],
                        "properties": {"notices": {"type": "array", "items": _ref("Notice")}},
                    },
                ),
                "400": _error("a bad query parameter (named)"),
                **PROTECTED,
            },
        }
    },
    "/api/reports/{config_id}/notify": {
        "get": {
            "operationId": "report_notify",
            "tags": [TAG],
            "summary": "Who is told about a report's runs: its owners and rules, or the default",
            "parameters": [
                {"name": "config_id", "in": "path", "required": True, "schema": ID},
            ],
            "responses": {
                "200": _ok("the effective rules", _ref("EffectiveNotify")),
                "400": _error("bad config_id"),
                "404": _error("unknown report"),
                **PROTECTED,
            },
        }
    },
}

EVENTS = {"enum": [event.value for event in Event]}
NOTIFY_RULE = {
    "type": "object",
    "required": ["events", "notify"],
    "additionalProperties": False,
    "properties": {
        "events": {"type": "array", "minItems": 1, "items": EVENTS},
        "notify": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "string",
                "pattern": r"^(email:[^@\s]+@[^@\s]+|delivery:[1-9][0-9]*|owners)$",
            },
            "description": "email:ADDRESS, delivery:ID (a report_deliveries row) or owners",
        },
        "remind_every_minutes": {"type": ["integer", "null"], "minimum": 1},
        "suspend_after": {"type": ["integer", "null"], "minimum": 1},
    },
}

SCHEMAS: dict[str, Any] = {
    "Notice": {
        "type": "object",
        "required": ["id", "incident_key", "event", "target", "status", "attempt"],
        "properties": {
            "id": {"type": "string"},
            "incident_key": {"type": "string"},
            "event": {"type": "string", "description": "an event, or suspended"},
            "target": {"type": "string"},
            "sequence": {"type": "integer", "description": "0 the first, 1.. reminders"},
            "config_id": {"type": ["integer", "null"]},
            "schedule_id": {"type": ["integer", "null"]},
            "execution_id": {"type": ["string", "null"]},
            "message": {"type": ["string", "null"]},
            "status": STATUS,
            "attempt": {"type": "integer"},
            "node_id": {"type": ["string", "null"]},
            "next_attempt_at": NULLABLE_DATETIME,
            "error_message": {"type": ["string", "null"]},
            "created_at": NULLABLE_DATETIME,
            "sent_at": NULLABLE_DATETIME,
        },
    },
    "NotifyRule": NOTIFY_RULE,
    "ReportNotify": {
        "type": "object",
        "description": "report_configs.notify, the catalog's [reports.notify]",
        "additionalProperties": False,
        "properties": {
            "owners": {"type": "array", "items": {"type": "string", "format": "email"}},
            "rules": {"type": "array", "items": _ref("NotifyRule")},
        },
    },
    "ScheduleDeadline": {
        "type": "string",
        "description": (
            "report_schedules.deadline: 'HH:MM[:SS]' in the schedule's zone (or "
            "'HH:MM ZONE'), or '+N' with unit s, m or h after the fire"
        ),
        "pattern": r"^(\d{2}:\d{2}(:\d{2})?( \S+)?|\+\d+[smh])$",
    },
    "EffectiveNotify": {
        "type": "object",
        "required": ["config_id", "report_name", "owners", "uses_default_rule", "rules"],
        "properties": {
            "config_id": {"type": "integer"},
            "report_name": {"type": "string"},
            "owners": {"type": "array", "items": {"type": "string"}},
            "uses_default_rule": {"type": "boolean"},
            "rules": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        **NOTIFY_RULE["properties"],  # type: ignore[dict-item]
                        "targets": {"type": "array", "items": {"type": "string"}},
                    },
                },
            },
            "problem": {
                "type": ["string", "null"],
                "description": "why the stored rules were refused (the key named)",
            },
        },
    },
}
