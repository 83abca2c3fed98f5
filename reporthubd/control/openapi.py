"""The OpenAPI 3.1 description of the control plane, served at `/api/openapi.json`.

Kept in the repository as data (this module); docs/api.md is rendered from it
(`python -m reporthubd.control.openapi --markdown > docs/api.md`, checked by a test), and the
test suite runs schemathesis against a live daemon with it.
"""

from __future__ import annotations

import json
from typing import Any

from reporthubd import __version__
from reporthubd.control import (
    openapi_alerts,
    openapi_audiences,
    openapi_backfills,
    openapi_console,
    openapi_executions,
    openapi_notices,
    openapi_schedules,
)
from reporthubd.control.openapi_parts import (
    DATETIME,
    JSON,
    PROTECTED,
)
from reporthubd.control.openapi_parts import answer as _answer
from reporthubd.control.openapi_parts import error as _error
from reporthubd.control.openapi_parts import id_param as _id_param
from reporthubd.control.openapi_parts import ok as _ok
from reporthubd.control.openapi_parts import ref as _ref
from reporthubd.control.openapi_schemas import (
    EXECUTION,
    JOB,
    LATENESS,
    NEXT_FIRES,
    RELOADED,
    SCHEDULER_STATUS,
    TAGS,
    name_operations,
)
from reporthubd.formats.charts import openapi_components as chart_components
from reporthubd.formats.columns import openapi_components as column_format_components
from reporthubd.formats.workbook import openapi_components as sheet_components


def spec() -> dict[str, Any]:
    execute: dict[str, Any] = {
        "summary": "Run a report now",
        "parameters": [_id_param("config_id")],
        "requestBody": {
            "required": False,
            "content": {JSON: {"schema": _ref("ExecuteRequest")}},
        },
        "responses": {
            "202": _ok("accepted; poll GET /api/execution/{id}", _ref("ExecutionStarted")),
            "200": _ok("finished within `wait` seconds", EXECUTION),
            "400": _error("bad input"),
            "404": _error("unknown or inactive report config"),
            "503": _error("the daemon is draining"),
            **PROTECTED,
        },
    }
    paths: dict[str, Any] = (
        {
            "/": {
                "get": {
                    "summary": "The status page: schedules, runs, failures, retries (HTML)",
                    "responses": {
                        "200": {
                            "description": "a server-rendered page",
                            "content": {"text/html; charset=utf-8": {"schema": {"type": "string"}}},
                        },
                        **PROTECTED,
                    },
                }
            },
            "/healthz": {
                "get": {
                    "summary": "The process is alive",
                    "security": [],
                    "responses": {
                        "200": _ok(
                            "alive",
                            {
                                "type": "object",
                                "required": ["node_id", "started_at"],
                                "properties": {
                                    "node_id": {"type": "string"},
                                    "started_at": {"type": "string", "format": "date-time"},
                                },
                            },
                        ),
                        **PROTECTED,
                    },
                }
            },
            "/readyz": {
                "get": {
                    "summary": "The store answers and the daemon is not draining",
                    "security": [],
                    "responses": {
                        "200": _ok(
                            "ready",
                            {
                                "type": "object",
                                "required": ["store", "journal_pending"],
                                "properties": {
                                    "store": {"const": "up"},
                                    "journal_pending": {"type": "integer"},
                                },
                            },
                        ),
                        "503": _error("not ready"),
                        **PROTECTED,
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "text exposition format",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        **PROTECTED,
                    },
                }
            },
            "/api/openapi.json": {
                "get": {
                    "summary": "This description",
                    "responses": {"200": _answer("OpenAPI 3.1", {"type": "object"}), **PROTECTED},
                }
            },
            "/api/execute/{config_id}": {"post": execute},
            # The seed's scheduler called the execution engine under this prefix; kept as an alias.
            "/execution_engine/api/execute/{config_id}": {
                "post": {
                    **execute,
                    "summary": "Run a report now (the seed's path: the same as "
                    "POST /api/execute/{config_id})",
                }
            },
        }
        | openapi_executions.paths()
        | {
            "/api/test-datasource/{datasource_id}": {
                "post": {
                    "summary": "Connect to a datasource: server version and round-trip time",
                    "parameters": [_id_param("datasource_id")],
                    "responses": {
                        "200": _ok("tested; `data.ok` says whether it worked"),
                        "400": _error("bad id"),
                        "404": _error("unknown datasource"),
                        "422": _error("the datasource row is invalid"),
                        **PROTECTED,
                    },
                }
            },
            "/api/test-delivery/{delivery_id}": {
                "post": {
                    "summary": "Check a delivery's target and credentials, sending no report",
                    "description": (
                        "Methods: email, sftp, s3, webhook, file_share, slack, teams, google_chat "
                        "(their delivery_config keys: docs/deliveries.md). Settings are checked "
                        "first: a slack delivery without `token` or `channel`, a teams or "
                        "google_chat one without `url`, a webhook `body` that does not parse or a "
                        "`signature` of standard/both without a whsec_ `secret` answer 422, the "
                        "error naming the key. Slack calls auth.test; a Teams or Google Chat "
                        "webhook cannot be called without posting, so only its settings are "
                        "checked."
                    ),
                    "parameters": [_id_param("delivery_id")],
                    "responses": {
                        "200": _ok("tested; `data.ok` says whether it worked"),
                        "400": _error("bad id"),
                        "404": _error("unknown delivery"),
                        "422": _error(
                            "the delivery row or its settings are invalid (names the key)"
                        ),
                        **PROTECTED,
                    },
                }
            },
            "/api/scheduler/status": {
                "get": {
                    "summary": "Node, uptime, schedules loaded and disabled, lateness, queue",
                    "responses": {
                        "200": _ok("status", _ref("SchedulerStatus")),
                        "503": _error("not running"),
                        **PROTECTED,
                    },
                }
            },
            "/api/scheduler/jobs": {
                "get": {
                    "summary": "One entry per schedule",
                    "responses": {
                        "200": _ok(
                            "jobs",
                            {
                                "type": "object",
                                "required": ["jobs"],
                                "properties": {"jobs": {"type": "array", "items": _ref("Job")}},
                            },
                        ),
                        "503": _error("not running"),
                        **PROTECTED,
                    },
                }
            },
            "/api/scheduler/reload": {
                "post": {
                    "summary": "Re-read the schedules from the store",
                    "responses": {
                        "200": _ok("reloaded", RELOADED),
                        "503": _error("reload failed; the previous schedules are kept"),
                        **PROTECTED,
                    },
                }
            },
            "/api/scheduler/trigger/{schedule_id}": {
                "post": {
                    "summary": "Run a schedule now (trigger_type manual)",
                    "parameters": [_id_param("schedule_id")],
                    "requestBody": {
                        "required": False,
                        "content": {
                            JSON: {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "scheduled_for": {"anyOf": [DATETIME, {"type": "null"}]},
                                        "parameters": {"type": ["object", "null"]},
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "202": _ok(
                            "triggered",
                            {
                                "type": "object",
                                "required": ["execution_id", "schedule_id"],
                                "properties": {
                                    "execution_id": {"type": "string"},
                                    "schedule_id": {"type": "integer"},
                                },
                            },
                        ),
                        "400": _error("bad input"),
                        "404": _error("unknown or disabled schedule"),
                        "503": _error("not running"),
                        **PROTECTED,
                    },
                }
            },
            "/api/schedules/{schedule_id}/next": {
                "get": {
                    "summary": "The next fires of a schedule, UTC and local",
                    "parameters": [
                        _id_param("schedule_id"),
                        {
                            "name": "n",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                        },
                    ],
                    "responses": {
                        "200": _ok("fires", NEXT_FIRES),
                        "400": _error("bad input"),
                        "404": _error("unknown schedule"),
                        "409": _error("the schedule is disabled (the reason is given)"),
                        "503": _error("not running"),
                        **PROTECTED,
                    },
                }
            },
        }
    )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "reporthubd control plane",
            "version": __version__,
            "description": (
                "Every JSON answer is an envelope: "
                '`{"status": "success", "message": ..., "data": {...}}` or '
                '`{"status": "error", "message": ..., "error": ...}`. '
                "Bearer tokens come from `control.token_file`; without one (loopback only) "
                "every path is open. A body over `control.max_body_bytes` gets 413."
            ),
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "tags": [{"name": name, "description": text} for name, text in TAGS.items()],
        "paths": name_operations(
            paths
            | openapi_schedules.PATHS
            | openapi_backfills.PATHS
            | openapi_console.PATHS
            | openapi_notices.PATHS
            | openapi_alerts.PATHS
            | openapi_audiences.PATHS
        ),
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["status", "message", "error"],
                    "properties": {
                        "status": {"const": "error"},
                        "message": {"type": "string"},
                        "error": {"type": "string"},
                    },
                },
                "ExecuteRequest": {
                    "type": "object",
                    "properties": {
                        "parameters": {"type": ["object", "null"]},
                        "deliver": {"type": "boolean"},
                        "scheduled_for": {"anyOf": [DATETIME, {"type": "null"}]},
                        "wait": {"type": "number", "minimum": 0, "maximum": 3600},
                    },
                },
                "Lateness": LATENESS,
                "Job": JOB,
                "SchedulerStatus": SCHEDULER_STATUS,
                **column_format_components(_ref),
                **chart_components(),
                **sheet_components(_ref),
                **openapi_schedules.SCHEMAS,
                **openapi_backfills.SCHEMAS,
                **openapi_notices.SCHEMAS,
                **openapi_alerts.SCHEMAS,
                **openapi_audiences.SCHEMAS,
                "ExecutionStarted": {
                    "type": "object",
                    "required": ["execution_id", "config_id", "status"],
                    "properties": {
                        "execution_id": {"type": "string"},
                        "config_id": {"type": "integer"},
                        "status": {"type": "string"},
                    },
                },
            },
        },
    }


def render_markdown() -> str:
    """docs/api.md, rendered from the spec."""
    document = spec()
    out = [
        "# HTTP API",
        "",
        "Rendered from the OpenAPI 3.1 description (`reporthubd/control/openapi.py`, served at "
        "`/api/openapi.json`) by `python -m reporthubd.control.openapi --markdown > docs/api.md`; "
        "a test fails when it is stale.",
        "",
        document["info"]["description"],
        "",
        "Every operation has an `operationId` and a tag, which a generated client names its "
        "functions and modules after: `openapi-python-client generate --path openapi.json` "
        "(the description fetched with a token) builds one without warnings, and the tests use "
        "it (tests/control/test_openapi_clients.py). A file download's `Content-Type` is the "
        "file's own: `text/csv; charset=utf-8`, the Excel type, `application/pdf`, "
        "`application/json`.",
        "",
    ]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            out += [f"## `{method.upper()} {path}`", "", operation["summary"] + ".", ""]
            tags = ", ".join(f"`{tag}`" for tag in operation["tags"])
            out += [f"Operation `{operation['operationId']}`, tag {tags}.", ""]
            params = [p for p in operation.get("parameters", []) if p["in"] == "query"]
            if params:
                out.append("Query: " + ", ".join(f"`{p['name']}`" for p in params) + ".")
                out.append("")
            if "requestBody" in operation:
                schema = operation["requestBody"]["content"][JSON]["schema"]
                if "$ref" in schema:
                    schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
                fields = ", ".join(f"`{name}`" for name in schema.get("properties", {}))
                out += [f"Body (optional, JSON): {fields}.", ""]
            out += ["| status | meaning |", "|---|---|"]
            for status, answer in operation["responses"].items():
                out.append(f"| {status} | {answer['description']} |")
            out.append("")
    return "\n".join(out).rstrip() + "\n"


if __name__ == "__main__":
    import sys

    if "--markdown" in sys.argv:
        print(render_markdown(), end="")
    else:
        print(json.dumps(spec(), indent=2))
