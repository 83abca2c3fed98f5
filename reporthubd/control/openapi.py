"""The OpenAPI 3.1 description of the control plane, served at `/api/openapi.json`.

Kept in the repository as data (this module); docs/api.md is rendered from it
(`python -m reporthubd.control.openapi --markdown > docs/api.md`, checked by a test), and the
test suite runs schemathesis against a live daemon with it.
"""

from __future__ import annotations

import json
from typing import Any

from reporthubd import __version__
from reporthubd.control.params import MAX_ID

JSON = "application/json"
ID = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
# JSON Schema 2020-12 treats `format` as an annotation: the pattern makes "with an offset" binding.
DATETIME_PATTERN = (
    r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|1\d|2[0-8])T([01]\d|2[0-3]):[0-5]\d(:[0-5]\d(\.\d{1,6})?)?"
    r"(Z|[+-](0\d|1[0-3]):[0-5]\d)$"
)
DATETIME = {"type": "string", "format": "date-time", "pattern": DATETIME_PATTERN}
STATUS = "(PENDING|RUNNING|COMPLETED|PARTIAL|FAILED|TIMEOUT|CANCELLED|SKIPPED)"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _success(data: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["status", "message", "data"],
        "properties": {
            "status": {"const": "success"},
            "message": {"type": "string"},
            "data": data or {"type": "object"},
        },
    }


def _answer(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _ok(description: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
    return _answer(description, _success(data))


def _error(description: str) -> dict[str, Any]:
    return _answer(description, _ref("Error"))


def _id_param(name: str, kind: str = "integer") -> dict[str, Any]:
    schema: dict[str, Any] = (
        {"type": "string", "minLength": 1, "maxLength": 36}
        if kind == "string"
        else {"type": "integer", "minimum": 1, "maximum": MAX_ID}
    )
    return {"name": name, "in": "path", "required": True, "schema": schema}


PROTECTED = {
    "401": _error("no bearer token (when tokens are configured)"),
    "403": _error("the token is not valid"),
}

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
# modules after. An operation missing here is named from its method and path (`_name`).
TAGS = {
    "daemon": "Liveness, readiness, metrics, the status page and this description",
    "executions": "Run reports, read the history, cancel, download the file",
    "deliveries": "Redeliver and test deliveries",
    "datasources": "Test datasources",
    "scheduler": "The scheduler's state and reload",
    "schedules": "One schedule: trigger, next fires, pause and resume",
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


def _name(paths: dict[str, Any]) -> dict[str, Any]:
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
        "trigger_type": {"enum": ["schedule", "manual", "retry", "recovery"]},
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


def spec() -> dict[str, Any]:
    execution_id = _id_param("execution_id", "string")
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
    paths: dict[str, Any] = {
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
                "responses": {"200": _ok("alive"), **PROTECTED},
            }
        },
        "/readyz": {
            "get": {
                "summary": "The store answers and the daemon is not draining",
                "security": [],
                "responses": {"200": _ok("ready"), "503": _error("not ready"), **PROTECTED},
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
        "/api/execution/{execution_id}": {
            "get": {
                "summary": "One execution, with its delivery ledger",
                "parameters": [execution_id],
                "responses": {
                    "200": _ok("the execution", EXECUTION),
                    "404": _error("unknown execution"),
                    "422": _error("the execution row, written by another service, is not valid"),
                    **PROTECTED,
                },
            }
        },
        "/api/executions": {
            "get": {
                "summary": "Executions, newest first",
                "parameters": [
                    {"name": "config_id", "in": "query", "schema": ID},
                    {"name": "schedule_id", "in": "query", "schema": ID},
                    {
                        "name": "status",
                        "in": "query",
                        "description": "comma-separated statuses",
                        "schema": {"type": "string", "pattern": f"^{STATUS}(,{STATUS})*$"},
                    },
                    {
                        "name": "since",
                        "in": "query",
                        "schema": DATETIME,
                    },
                    {
                        "name": "until",
                        "in": "query",
                        "schema": DATETIME,
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 500},
                    },
                    {
                        "name": "offset",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 0, "maximum": MAX_ID},
                    },
                ],
                "responses": {
                    "200": _ok(
                        "a page",
                        {
                            "type": "object",
                            "required": ["items", "total", "limit", "offset"],
                            "properties": {
                                "items": {"type": "array", "items": EXECUTION},
                                "total": {"type": "integer"},
                                "limit": {"type": "integer"},
                                "offset": {"type": "integer"},
                            },
                        },
                    ),
                    "400": _error("bad filter"),
                    **PROTECTED,
                },
            }
        },
        "/api/execution/{execution_id}/cancel": {
            "post": {
                "summary": "Cancel a pending or running execution (its query is stopped)",
                "parameters": [execution_id],
                "requestBody": {
                    "required": False,
                    "content": {
                        JSON: {
                            "schema": {
                                "type": "object",
                                "properties": {"reason": {"type": "string"}},
                            }
                        }
                    },
                },
                "responses": {
                    "200": _ok("cancelled"),
                    "400": _error("bad input"),
                    "404": _error("unknown execution"),
                    "422": _error("the execution row, written by another service, is not valid"),
                    "409": _error("already finished, or running on another node"),
                    "503": _error("the engine is not running"),
                    **PROTECTED,
                },
            }
        },
        "/api/execution/{execution_id}/redeliver": {
            "post": {
                "summary": "Re-run the deliveries (and recipients) that failed",
                "parameters": [execution_id],
                "responses": {
                    "200": _ok("re-run"),
                    "400": _error("bad id"),
                    "404": _error("unknown execution"),
                    "422": _error("the execution row, written by another service, is not valid"),
                    "409": _error("nothing to redeliver yet (no file, or still running)"),
                    **PROTECTED,
                },
            }
        },
        "/api/execution/{execution_id}/file": {
            "get": {
                "summary": "Download the produced file while it is retained",
                "parameters": [execution_id],
                "responses": {
                    "200": {
                        "description": (
                            "the file, as its report's format wrote it: CSV (UTF-8, with a BOM "
                            "when the report asks for one; `text/csv` without a charset when it "
                            "was written in another encoding), Excel, PDF, JSON or JSON Lines, "
                            "gzip or zip for a compressed CSV"
                        ),
                        "headers": {
                            "Content-Disposition": {
                                "description": "attachment; the file name, also as RFC 5987 "
                                "`filename*`",
                                "schema": {"type": "string"},
                            }
                        },
                        "content": {
                            media: {"schema": {"type": "string", "format": "binary"}}
                            for media in DOWNLOAD_TYPES
                        },
                    },
                    "404": _error("unknown execution, no file, or no longer retained"),
                    "422": _error("the execution row, written by another service, is not valid"),
                    "409": _error("not produced yet"),
                    **PROTECTED,
                },
            }
        },
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
                "parameters": [_id_param("delivery_id")],
                "responses": {
                    "200": _ok("tested; `data.ok` says whether it worked"),
                    "400": _error("bad id"),
                    "404": _error("unknown delivery"),
                    "422": _error("the delivery row is invalid"),
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
                "responses": {"200": _ok("jobs"), "503": _error("not running"), **PROTECTED},
            }
        },
        "/api/scheduler/reload": {
            "post": {
                "summary": "Re-read the schedules from the store",
                "responses": {
                    "200": _ok("reloaded"),
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
                    "202": _ok("triggered"),
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
                    "200": _ok("fires"),
                    "400": _error("bad input"),
                    "404": _error("unknown schedule"),
                    "409": _error("the schedule is disabled (the reason is given)"),
                    "503": _error("not running"),
                    **PROTECTED,
                },
            }
        },
    }
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
        "paths": _name(paths),
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
                "SchedulerStatus": SCHEDULER_STATUS,
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
    ]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            out += [f"## `{method.upper()} {path}`", "", operation["summary"] + ".", ""]
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
