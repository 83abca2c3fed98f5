"""The OpenAPI description of a report's conditional alert (control/alerts.py, issue 17 item 2),
merged into `openapi.spec()`."""

from __future__ import annotations

from typing import Any

from reporthubd.control.openapi_notices import ID, PROTECTED, _error, _ok, _ref

_TEXT = {"type": ["string", "null"]}

PATHS: dict[str, Any] = {
    "/api/reports/{config_id}/alert": {
        "get": {
            "operationId": "report_alert",
            "tags": ["notices"],
            "summary": "A report's conditional alert (condition, send mode) and its alert state",
            "parameters": [{"name": "config_id", "in": "path", "required": True, "schema": ID}],
            "responses": {
                "200": _ok("the alert and its state", _ref("ReportAlert")),
                "400": _error("bad config_id"),
                "404": _error("unknown report"),
                **PROTECTED,
            },
        }
    },
}

SCHEMAS: dict[str, Any] = {
    "ReportAlert": {
        "type": "object",
        "required": ["config_id", "report_name", "alert", "mode", "condition", "problem", "state"],
        "properties": {
            "config_id": {"type": "integer"},
            "report_name": {"type": "string"},
            "alert": {
                "type": ["object", "null"],
                "description": "report_configs.alert as stored: {condition, mode, check_query} "
                "(docs/authors.md, Conditional alerts); null: every run delivered",
            },
            "mode": {"enum": ["always", "when_true", "on_transition", "on_change", None]},
            "condition": {**_TEXT, "description": "e.g. 'sum(amount) >= Decimal(\\'100\\')'"},
            "problem": {**_TEXT, "description": "why the stored alert is refused, naming the key"},
            "state": {
                "type": "object",
                "required": [
                    "last_truth",
                    "last_execution_id",
                    "delivered_sha256",
                    "delivered_execution_id",
                ],
                "properties": {
                    "last_truth": {"type": ["boolean", "null"]},
                    "last_execution_id": _TEXT,
                    "delivered_sha256": _TEXT,
                    "delivered_execution_id": _TEXT,
                },
            },
        },
    },
}
