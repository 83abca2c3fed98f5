"""Execution routes: trigger a report, read an execution, cancel one.

- `POST /api/execute/{config_id}` — body (optional): `{"parameters": {...}, "deliver": true,
  "scheduled_for": "<ISO time with offset>", "wait": <seconds>}`. 202 with
  `{"execution_id", "config_id", "status": "PENDING"}`; with `wait`, 200 and the finished
  execution when it ends within that many seconds; 404 for an unknown config.
- `GET /api/execution/{execution_id}` — the execution row, plus `progress` while it runs here.
- `POST /api/execution/{execution_id}/cancel` — body (optional): `{"reason": "..."}`. Stops the
  query on the server; the execution ends CANCELLED with the reason.
- `POST /api/execution/{execution_id}/rerun` — body (optional): `{"deliver": true,
  "parameters": {...}}`. A run of a schedule's fire is re-run as that fire's next attempt,
  under the scheduler's claim key (store/reruns.py): 409 while an attempt of the fire is PENDING
  or RUNNING (naming it), so a re-run never doubles a fire. Its parameters are the fire's own
  (the report's and the schedule's, for the fire's logical time), unless `parameters` overrides
  them. Any other run (manual, no fire) runs again with its parameters and logical time. 202
  with `{"execution_id", "config_id", "status", "attempt", "scheduled_for", "fire"}`.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from aiohttp import web

from reporthubd import domain
from reporthubd.control import envelope
from reporthubd.control.params import json_object, path_id
from reporthubd.control.runtime import engine as running_engine
from reporthubd.control.runtime import runtime
from reporthubd.domain import execution_data
from reporthubd.engine.engine import EngineStopped, UnknownConfig
from reporthubd.store import delivery_logs, executions, reruns
from reporthubd.store.database import Store

MAX_WAIT = 3600


async def execute(request: web.Request) -> web.Response:
    engine = running_engine(request)
    config_id = path_id(request, "config_id")
    body = await json_object(request)
    parameters = body.get("parameters")
    if parameters is None:
        parameters = {}
    if not isinstance(parameters, dict):
        return envelope.error("bad request", '"parameters" must be a JSON object', status=400)
    deliver = body.get("deliver", True)
    if not isinstance(deliver, bool):
        return envelope.error("bad request", '"deliver" must be true or false', status=400)
    wait = body.get("wait", 0)
    if isinstance(wait, bool) or not isinstance(wait, int | float) or not 0 <= wait <= MAX_WAIT:
        return envelope.error(
            "bad request", f'"wait" must be a number of seconds from 0 to {MAX_WAIT}', status=400
        )
    scheduled_for = None
    if body.get("scheduled_for") is not None:
        try:
            scheduled_for = datetime.fromisoformat(str(body["scheduled_for"]))
        except ValueError:
            scheduled_for = None
        if scheduled_for is None or scheduled_for.tzinfo is None:
            return envelope.error(
                "bad request",
                '"scheduled_for" must be an ISO 8601 time with an offset, e.g. '
                "2026-11-29T09:00:00+01:00",
                status=400,
            )
    try:
        execution_id = await engine.create_and_submit(
            config_id,
            trigger_type=domain.TriggerType.MANUAL,
            scheduled_for=scheduled_for,
            parameters=parameters,
            deliver=deliver,
        )
    except UnknownConfig as exc:
        return envelope.error("not found", str(exc), status=404)
    except EngineStopped as exc:
        return envelope.error("not accepting work", str(exc), status=503)
    if wait:
        finished = await _wait_for_end(runtime(request).store, execution_id, float(wait))
        if finished is not None:
            return envelope.success("Report execution finished", execution_data(finished))
    return envelope.success(
        "Report execution started",
        {"execution_id": execution_id, "config_id": config_id, "status": "PENDING"},
        status=202,
    )


def ledger_data(logs: list[delivery_logs.DeliveryLog]) -> list[dict[str, Any]]:
    """The delivery ledger of an execution: one entry per delivery, its attempts in order (one
    row per recipient group for email). Attempt details are left out: they may hold presigned
    links, which are credentials."""
    by_delivery: dict[int, list[dict[str, Any]]] = {}
    for log in sorted(logs, key=lambda entry: (entry.delivery_id, entry.attempt, entry.id)):
        by_delivery.setdefault(log.delivery_id, []).append(
            {
                "attempt": log.attempt,
                "status": log.status.value,
                "target": log.target,
                "recipients": [str(r) for r in log.recipients],
                "error": log.error_message,
                "started_at": log.started_at.isoformat() if log.started_at else None,
                "finished_at": log.finished_at.isoformat() if log.finished_at else None,
                "next_retry_at": log.next_retry_at.isoformat() if log.next_retry_at else None,
            }
        )
    return [
        {"delivery_id": delivery_id, "attempts": attempts}
        for delivery_id, attempts in by_delivery.items()
    ]


async def _wait_for_end(store: Store, execution_id: str, seconds: float) -> domain.Execution | None:
    """The execution once it is terminal, or None when `seconds` pass first. Reads the store, so
    it works whichever node runs the execution."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    pause = 0.05
    while True:
        execution = await executions.get_execution(store, execution_id)
        if execution is not None and execution.status.is_terminal:
            return execution
        remaining = deadline - loop.time()
        if remaining <= 0:
            return None
        await asyncio.sleep(min(pause, remaining))
        pause = min(pause * 2, 1.0)


async def get_execution(request: web.Request) -> web.Response:
    daemon = runtime(request)
    execution_id = request.match_info["execution_id"]
    execution = await executions.get_execution(daemon.store, execution_id)
    if execution is None:
        return envelope.error("not found", f"execution {execution_id} does not exist", status=404)
    data = execution_data(execution)
    data["deliveries"] = ledger_data(
        await delivery_logs.logs_for_execution(daemon.store, execution_id)
    )
    engine = daemon.engine  # progress is known only for a run of this node
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
    engine = running_engine(request)
    execution_id = request.match_info["execution_id"]
    body = await json_object(request)
    reason = body.get("reason") or "cancelled through the control plane"
    if not isinstance(reason, str):
        return envelope.error("bad request", '"reason" must be a string', status=400)
    store = runtime(request).store
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


async def rerun(request: web.Request) -> web.Response:
    engine = running_engine(request)
    execution_id = request.match_info["execution_id"]
    body = await json_object(request)
    deliver = body.get("deliver", True)
    if not isinstance(deliver, bool):
        return envelope.error("bad request", '"deliver" must be true or false', status=400)
    override = body.get("parameters")
    if override is not None and not isinstance(override, dict):
        return envelope.error("bad request", '"parameters" must be a JSON object', status=400)
    original = await executions.get_execution(runtime(request).store, execution_id)
    if original is None:
        return envelope.error("not found", f"execution {execution_id} does not exist", status=404)
    fire = original.schedule_id is not None and original.scheduled_for is not None
    try:
        if original.schedule_id is not None and original.scheduled_for is not None:
            claimed = await engine.rerun_fire(
                original.config_id,
                schedule_id=original.schedule_id,
                scheduled_for=original.scheduled_for,
                parameters=override,
                deliver=deliver,
            )
            new_id, attempt = claimed.execution_id, claimed.attempt
        else:
            new_id = await engine.create_and_submit(
                original.config_id,
                trigger_type=domain.TriggerType.MANUAL,
                scheduled_for=original.scheduled_for,
                parameters=override if override is not None else dict(original.parameters),
                deliver=deliver,
            )
            attempt = None
    except reruns.FireActive as exc:
        return envelope.error("fire running", str(exc), status=409)
    except UnknownConfig as exc:
        return envelope.error("not found", str(exc), status=404)
    except EngineStopped as exc:
        return envelope.error("not accepting work", str(exc), status=503)
    scheduled_for = original.scheduled_for.isoformat() if original.scheduled_for else None
    what = f"attempt {attempt} of the fire {scheduled_for}" if fire else "a new manual run"
    return envelope.success(
        f"Re-run started: {what}",
        {
            "execution_id": new_id,
            "config_id": original.config_id,
            "status": "PENDING",
            "attempt": attempt,
            "scheduled_for": scheduled_for,
            "fire": fire,
        },
        status=202,
    )


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/execute/{config_id}", execute)
    # The seed's scheduled flow calls the execution engine under this prefix (an alias).
    app.router.add_post("/execution_engine/api/execute/{config_id}", execute)
    app.router.add_get("/api/execution/{execution_id}", get_execution)
    app.router.add_post("/api/execution/{execution_id}/cancel", cancel)
    app.router.add_post("/api/execution/{execution_id}/rerun", rerun)
