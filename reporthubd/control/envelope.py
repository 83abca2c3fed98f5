"""The one response envelope of ARCHITECTURE.md, for every answer of the control plane."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from reporthubd import secrets


def success(message: str, data: Any = None, *, status: int = 200) -> web.Response:
    body = {"status": "success", "message": message, "data": data if data is not None else {}}
    return web.json_response(body, status=status, dumps=_dumps)


def error(message: str, error: str, *, status: int) -> web.Response:
    body = {"status": "error", "message": message, "error": secrets.redact_text(error)}
    return web.json_response(body, status=status, dumps=_dumps)


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str)
