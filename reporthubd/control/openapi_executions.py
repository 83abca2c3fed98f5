"""The OpenAPI description of one execution and the executions list: reading, paging, cancel,
re-run, redeliver and the file download. Merged into `openapi.spec()` in place."""

from __future__ import annotations

from typing import Any

from reporthubd.control.openapi_parts import (
    CURSOR_PATTERN,
    DATETIME,
    ID,
    JSON,
    PROTECTED,
    STATUS,
)
from reporthubd.control.openapi_parts import error as _error
from reporthubd.control.openapi_parts import id_param as _id_param
from reporthubd.control.openapi_parts import ok as _ok
from reporthubd.control.openapi_schemas import DOWNLOAD_TYPES, EXECUTION
from reporthubd.control.params import MAX_ID


def paths() -> dict[str, Any]:
    execution_id = _id_param("execution_id", "string")
    return {
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
                    {
                        "name": "after",
                        "in": "query",
                        "description": (
                            "keyset paging: the previous answer's next_after (total is then "
                            "null: no count over the history; an offset counts from it)"
                        ),
                        "schema": {"type": "string", "pattern": CURSOR_PATTERN},
                    },
                ],
                "responses": {
                    "200": _ok(
                        "a page",
                        {
                            "type": "object",
                            "required": ["items", "total", "limit", "offset", "next_after"],
                            "properties": {
                                "items": {"type": "array", "items": EXECUTION},
                                "total": {
                                    "type": ["integer", "null"],
                                    "description": "how many match; null on a keyset page",
                                },
                                "limit": {"type": "integer"},
                                "offset": {"type": "integer"},
                                "next_after": {
                                    "type": ["string", "null"],
                                    "description": "the next page's after; null on the last",
                                },
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
        "/api/execution/{execution_id}/rerun": {
            "post": {
                "summary": "Re-run a run: a fire's next attempt under the scheduler's claim key",
                "description": (
                    "A run of a schedule's fire is re-run as that fire's next attempt (the "
                    "same unique key as the scheduler's claim, so the two never double a "
                    "fire): refused with 409 while an attempt of the fire is PENDING or "
                    "RUNNING. Its parameters are the fire's own unless `parameters` overrides "
                    "them. A run of no fire runs again with its parameters."
                ),
                "parameters": [execution_id],
                "requestBody": {
                    "required": False,
                    "content": {
                        JSON: {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "deliver": {"type": "boolean"},
                                    "parameters": {"type": ["object", "null"]},
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "202": _ok(
                        "started",
                        {
                            "type": "object",
                            "required": ["execution_id", "config_id", "status", "fire"],
                            "properties": {
                                "execution_id": {"type": "string"},
                                "config_id": {"type": "integer"},
                                "status": {"type": "string"},
                                "attempt": {"type": ["integer", "null"]},
                                "scheduled_for": {"anyOf": [DATETIME, {"type": "null"}]},
                                "fire": {"type": "boolean"},
                            },
                        },
                    ),
                    "400": _error("bad input"),
                    "404": _error("unknown execution or report"),
                    "409": _error("an attempt of the fire is pending or running"),
                    "422": _error("the execution row, written by another service, is not valid"),
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
    }
