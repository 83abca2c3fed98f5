"""The OpenAPI description of pausing and resuming a schedule (control/schedules.py): its paths
and schemas, merged into `openapi.spec()`. Written with its own few pieces (openapi.py
imports this module, not the other way round)."""

from __future__ import annotations

from typing import Any

from reporthubd.control.params import MAX_ID

JSON = "application/json"
DATETIME = {"type": "string", "format": "date-time"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _answer(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


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
    return _answer(description, envelope)


def _error(description: str) -> dict[str, Any]:
    return _answer(description, _ref("Error"))


SCHEDULE_ID = {
    "name": "schedule_id",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
}
PROTECTED = {
    "401": _error("no bearer token (when tokens are configured)"),
    "403": _error("the token is not valid"),
}

BY = {"type": ["string", "null"], "maxLength": 255, "description": "who (default: api)"}

PATHS: dict[str, Any] = {
    "/api/schedules/{schedule_id}/pause": {
        "post": {
            "summary": "Pause a schedule: its fires are recorded SKIPPED, with who and why",
            "description": (
                "The schedule keeps its place: each fire from now on is claimed like any other "
                'but recorded SKIPPED "paused by <by> since <when>: <reason>". This node applies '
                "it at once, other nodes on their definitions watcher "
                "(scheduler.reload_interval_seconds)."
            ),
            "parameters": [SCHEDULE_ID],
            "requestBody": {"required": True, "content": {JSON: {"schema": _ref("PauseRequest")}}},
            "responses": {
                "200": _ok("paused", _ref("PauseState")),
                "400": _error("bad input (the key is named: reason, by, the body)"),
                "404": _error("unknown schedule"),
                "409": _error("already paused (by whom, since when, why)"),
                **PROTECTED,
            },
        }
    },
    "/api/schedules/{schedule_id}/resume": {
        "post": {
            "summary": "Resume a paused schedule",
            "description": (
                "Its misfire policy applies from this moment only: the fires that fell in the "
                "pause were recorded SKIPPED and are never caught up."
            ),
            "parameters": [SCHEDULE_ID],
            "requestBody": {
                "required": False,
                "content": {JSON: {"schema": _ref("ResumeRequest")}},
            },
            "responses": {
                "200": _ok("resumed", _ref("PauseState")),
                "400": _error("bad input (the key is named)"),
                "404": _error("unknown schedule"),
                "409": _error("the schedule is not paused"),
                **PROTECTED,
            },
        }
    },
}

JOB_PAUSED: dict[str, Any] = {
    "type": ["object", "null"],
    "description": "null while the schedule runs; else who paused it, why, since when, and the "
    "reason its fires are recorded SKIPPED with",
    "required": ["since", "by", "reason", "skip_reason"],
    "properties": {
        "since": DATETIME,
        "by": {"type": ["string", "null"]},
        "reason": {"type": ["string", "null"]},
        "skip_reason": {"type": "string"},
    },
}

SCHEMAS: dict[str, Any] = {
    "PauseRequest": {
        "type": "object",
        "required": ["reason"],
        "additionalProperties": False,
        "properties": {
            # Not only whitespace as Python strips it (which \x1c-\x1f and \x85 are too; an
            # ECMA \S matches them: schemathesis sent "\x1f" and got the 400).
            "reason": {
                "type": "string",
                "minLength": 1,
                "maxLength": 1000,
                "pattern": r"[^\s\x1c-\x1f\x85]",
            },
            "by": BY,
        },
    },
    "ResumeRequest": {
        "type": "object",
        "additionalProperties": False,
        "properties": {"by": BY},
    },
    "PauseState": {
        "type": "object",
        "required": ["schedule_id", "paused"],
        "properties": {
            "schedule_id": {"type": "integer"},
            "paused": {"type": "boolean"},
            "paused_at": {"anyOf": [DATETIME, {"type": "null"}]},
            "paused_by": {"type": ["string", "null"]},
            "paused_reason": {"type": ["string", "null"]},
            "resumed_at": {"anyOf": [DATETIME, {"type": "null"}]},
            "resumed_by": {"type": ["string", "null"]},
        },
    },
}
