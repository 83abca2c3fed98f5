"""The small pieces every part of the OpenAPI description is written with: the answer
envelope, errors, path parameters, the shared field schemas."""

from __future__ import annotations

from typing import Any

from reporthubd.control.params import MAX_ID
from reporthubd.store.console import CURSOR_PATTERN

__all__ = ["CURSOR_PATTERN"]

JSON = "application/json"
ID = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
# JSON Schema 2020-12 treats `format` as an annotation: the pattern makes "with an offset" binding.
DATETIME_PATTERN = (
    r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|1\d|2[0-8])T([01]\d|2[0-3]):[0-5]\d(:[0-5]\d(\.\d{1,6})?)?"
    r"(Z|[+-](0\d|1[0-3]):[0-5]\d)$"
)
DATETIME = {"type": "string", "format": "date-time", "pattern": DATETIME_PATTERN}
STATUS = "(PENDING|RUNNING|COMPLETED|PARTIAL|FAILED|TIMEOUT|CANCELLED|SKIPPED)"


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def success(data: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["status", "message", "data"],
        "properties": {
            "status": {"const": "success"},
            "message": {"type": "string"},
            "data": data or {"type": "object"},
        },
    }


def answer(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def ok(description: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
    return answer(description, success(data))


def error(description: str) -> dict[str, Any]:
    return answer(description, ref("Error"))


def id_param(name: str, kind: str = "integer") -> dict[str, Any]:
    schema: dict[str, Any] = (
        {"type": "string", "minLength": 1, "maxLength": 36}
        if kind == "string"
        else {"type": "integer", "minimum": 1, "maximum": MAX_ID}
    )
    return {"name": name, "in": "path", "required": True, "schema": schema}


PROTECTED = {
    "401": error("no bearer token (when tokens are configured)"),
    "403": error("the token is not valid"),
}
