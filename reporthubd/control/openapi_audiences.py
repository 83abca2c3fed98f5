"""The OpenAPI description of data-driven runs (control/audiences.py): the dry run and a run's
audiences, merged into `openapi.spec()`; written with its own few pieces (openapi.py imports this
module, not the other way round)."""

from __future__ import annotations

from typing import Any

from reporthubd.control.params import MAX_ID

JSON = "application/json"


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


PROTECTED = {
    "401": _error("no bearer token (when tokens are configured)"),
    "403": _error("the token is not valid"),
}
STRINGS = {"type": "array", "items": {"type": "string"}}
AUDIENCE = {
    "type": "object",
    "required": ["key", "recipients", "parameters", "overrides"],
    "properties": {
        "key": {"type": "string", "description": "the driver's key column, or a row hash"},
        "recipients": {
            **STRINGS,
            "description": (
                "the driver row's recipients: email addresses, and chat targets slack:CHANNEL_ID, "
                "teams:URL or google_chat:URL (a webhook URL shown without its query)"
            ),
        },
        "parameters": {"type": "object"},
        "overrides": {
            "type": "object",
            "properties": {
                name: {"type": "string"} for name in ("file_name", "locale", "timezone", "subject")
            },
        },
        "targets": {**STRINGS, "description": "email:ADDRESS, or METHOD:DELIVERY_NAME"},
        "child_execution_id": {"type": "string", "description": "the audience's own run"},
    },
}
COUNTS = {
    "type": "object",
    "required": ["audiences", "delivered", "failed", "skipped", "unfinished"],
    "properties": {
        name: {"type": "integer", "minimum": 0}
        for name in ("audiences", "delivered", "failed", "skipped", "unfinished")
    },
}
SPLIT_BY = {
    "type": "string",
    "minLength": 1,
    "maxLength": 255,
    "description": (
        "format_options.split_by, on a report with an audience driver whose key_column is set: "
        "the report's query runs once and its rows are cut into one file per value of this "
        "column (its text, trimmed, is the audience key), each the file of that audience's child "
        "run. An audience without rows is skipped as empty; rows whose key has no audience go "
        "to nobody; the parent run's error_message counts both (e.g. \"split by 'branch': "
        "1000000 rows, 998 files; 2 audiences without rows, skipped as empty: 'B0998', "
        "'B0999'\"). A column the query lacks fails the run (and check --connect) with "
        "\"format option 'split_by': the result has no column ...\"."
    ),
}
SCHEMAS: dict[str, Any] = {
    "Audience": AUDIENCE,
    "SplitBy": SPLIT_BY,
    "AudienceCounts": COUNTS,
    "AudienceDryRunRequest": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "parameters": {"type": ["object", "null"], "description": "run parameters"},
            "limit": {"type": ["integer", "null"], "minimum": 0, "description": "list at most"},
        },
    },
}

PATHS: dict[str, Any] = {
    "/api/audiences/{config_id}/dry-run": {
        "post": {
            "operationId": "dry_run_audiences",
            "tags": ["executions"],
            "summary": "A data-driven report's audiences, parameters and targets: nothing run",
            "description": (
                "Runs the report's driver query (read-only) with the run's parameters and checks "
                "every row as a run would; writes no execution, file or delivery. 422 names the "
                "driver column or audience key a run would refuse (no recipients, a duplicate key, "
                "a column that is no parameter of the report, an unknown time zone)."
            ),
            "parameters": [
                {
                    "name": "config_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
                }
            ],
            "requestBody": {
                "required": False,
                "content": {JSON: {"schema": _ref("AudienceDryRunRequest")}},
            },
            "responses": {
                "200": _ok(
                    "the audiences",
                    {
                        "type": "object",
                        "required": ["config_id", "report_name", "count", "audiences"],
                        "properties": {
                            "config_id": {"type": "integer"},
                            "report_name": {"type": "string"},
                            "parameters": {"type": "object"},
                            "count": {"type": "integer", "minimum": 0},
                            "audiences": {"type": "array", "items": _ref("Audience")},
                        },
                    },
                ),
                "400": _error("a bad body or config id"),
                "404": _error("no such report, or it has no active driver"),
                "422": _error("the driver or the report is invalid (the key or column named)"),
                "502": _error("the driver query failed"),
                **PROTECTED,
            },
        }
    },
    "/api/execution/{execution_id}/audiences": {
        "get": {
            "operationId": "execution_audiences",
            "tags": ["executions"],
            "summary": "A data-driven run's counts and a page of its audiences",
            "parameters": [
                {
                    "name": "execution_id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string"},
                },
                {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 0, "maximum": 1000},
                },
            ],
            "responses": {
                "200": _ok(
                    "the run's counts and audiences",
                    {
                        "type": "object",
                        "required": ["execution_id", "burst_id", "status", "counts", "audiences"],
                        "properties": {
                            "execution_id": {"type": "string"},
                            "burst_id": {"type": "string"},
                            "status": {"type": "string"},
                            "enumerated": {"type": "boolean"},
                            "counts": _ref("AudienceCounts"),
                            "offset": {"type": "integer"},
                            "audiences": {"type": "array", "items": _ref("Audience")},
                        },
                    },
                ),
                "400": _error("a bad offset or limit"),
                "404": _error("no such execution, or it is no data-driven run"),
                **PROTECTED,
            },
        }
    },
}
