"""Execution routes: trigger a report, read an execution, cancel one.

- `POST /api/execute/{config_id}` — body (optional): `{"parameters": {...}, "deliver": true}`.
  202 with `{"execution_id", "config_id", "status": "PENDING"}`; 404 for an unknown config.
- `GET /api/execution/{execution_id}` — the execution row, plus `progress` while it runs here.
- `POST /api/execution/{execution_id}/cancel` — body (optional): `{"reason": "..."}`. Stops the
  query on the server; the execution ends CANCELLED with the reason.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime
from typing import Any

from aiohttp import web

from reporthubd import domain
from reporthubd.control import envelope
from reporthubd.engine import EngineStopped, UnknownConfig
from reporthubd.store import executions


def _runtime(request: web.Request) -> Any:
    from reporthubd.control.app import RUNTIME_KEY

    return request.app[RUNTIME_KEY]


def _engine(request: web.Request) -> Any:
    engine = getattr(_runtime(request), "engine", None)
    if engine is None:
        raise web.HTTPServiceUnavailable(reason="the execution engine is not running")
    return engine


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json(loads=json.loads)
    except ValueError:
        raise web.HTTPBadRequest(reason="the body is not valid JSON") from None
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(reason="the body must be a JSON object")
    return body


def execution_data(execution: domain.Execution) -> dict[str, Any]:
    data = asdict(execution)
    for key, value in list(data.items()):
        if isinstance(value, datetime):
            data[key] = value.isoformat()
        elif hasattr(value, "value"):
            data[key] = value.value
    data["parameters"] = dict(execution.parameters)
    return data


async def execute(request: web.Request) -> web.Response:
    engine = _engine(request)
    try:
        config_id = int(request.match_info["config_id"])
    except ValueError:
        return envelope.error("bad request", "config_id must be an integer", status=400)
    body = await _body(request)
    parameters = body.get("parameters") or {}
    if not isinstance(parameters, dict):
        return envelope.error("bad request", '"parameters" must be a JSON object', status=400)
    deliver = body.get("deliver", True)
    if not isinstance(deliver, bool):
        return envelope.error("bad request", '"deliver" must be true or false', status=400)
    try:
        execution_id = await engine.create_and_submit(
            config_id,
            trigger_type=domain.TriggerType.MANUAL,
            parameters=parameters,
            deliver=deliver,
        )
    except UnknownConfig as exc:
        return envelope.error("not found", str(exc), status=404)
    except EngineStopped as exc:
        return envelope.error("not accepting work", str(exc), status=503)
    return envelope.success(
        "Report execution started",
        {"execution_id": execution_id, "config_id": config_id, "status": "PENDING"},
        status=202,
    )


async def get_execution(request: web.Request) -> web.Response:
    execution_id = request.match_info["execution_id"]
    execution = await executions.get_execution(_runtime(request).store, execution_id)
    if execution is None:
        return envelope.error("not found", f"execution {execution_id} does not exist", status=404)
    data = execution_data(execution)
    engine = getattr(_runtime(request), "engine", None)
    progress = engine.progress(execution_id) if engine is not None else None
    if progress is not None:
        data["progress"] = {
            "phase": progress.phase,
            "rows": progress.rows,
            "bytes": progress.bytes,
            "elapsed_seconds": round(progress.elapsed(), 3),
        }
    return envelope.success("execution", data)


async def cancel(request: web.Request) -> web.Response:
    engine = _engine(request)
    execution_id = request.match_info["execution_id"]
    body = await _body(request)
    reason = body.get("reason") or "cancelled through the control plane"
    if not isinstance(reason, str):
        return envelope.error("bad request", '"reason" must be a string', status=400)
    store = _runtime(request).store
    execution = await executions.get_execution(store, execution_id)
    if execution is None:
        return envelope.error("not found", f"execution {execution_id} does not exist", status=404)
    if execution.status.is_terminal:
        return envelope.error(
            "not cancelled",
            f"execution {execution_id} has already finished ({execution.status.value})",
            status=409,
        )
    cancelled = await engine.cancel(execution_id, f"cancelled: {reason}")
    if not cancelled:
        return envelope.error(
            "not cancelled",
            f"execution {execution_id} runs on node {execution.node_id}, not on this node",
            status=409,
        )
    after = await executions.get_execution(store, execution_id)
    status = after.status.value if after is not None else "CANCELLED"
    return envelope.success("execution cancelled", {"execution_id": execution_id, "status": status})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/execute/{config_id}", execute)
    app.router.add_get("/api/execution/{execution_id}", get_execution)
    app.router.add_post("/api/execution/{execution_id}/cancel", cancel)
