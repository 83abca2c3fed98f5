"""Pausing and resuming a schedule: POST /api/schedules/{schedule_id}/pause with
{"reason": ..., "by": ...}, POST /api/schedules/{schedule_id}/resume with {"by": ...}.

The write is the store's (store/pauses.py); then this node's scheduler reloads at once, so the
next fire is already SKIPPED "paused by ..." here. Other nodes follow on their definitions
watcher (`scheduler.reload_interval_seconds`). Guarded by the API token like every route but
the health checks.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from reporthubd.control import envelope, runtime
from reporthubd.control.params import json_object, path_id
from reporthubd.store import pauses

DEFAULT_BY = "api"


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/schedules/{schedule_id}/pause", pause)
    app.router.add_post("/api/schedules/{schedule_id}/resume", resume)


def _by(body: dict[str, Any]) -> str:
    by = pauses.checked_text("by", body.get("by"), limit=pauses.MAX_BY, required=False)
    return by or DEFAULT_BY


async def _reload(request: web.Request) -> None:
    scheduler = runtime.runtime(request).scheduler
    if scheduler is not None:
        await scheduler.reload(source="pause")


async def pause(request: web.Request) -> web.Response:
    schedule_id = path_id(request, "schedule_id")
    body = await json_object(request, known=("by", "reason"))
    try:
        by = _by(body)
        reason = pauses.checked_text(
            "reason", body.get("reason"), limit=pauses.MAX_REASON, required=True
        )
        assert reason is not None
        found = await pauses.pause(
            runtime.runtime(request).store, schedule_id, by=by, reason=reason
        )
    except pauses.UnknownSchedule as exc:
        return envelope.error("unknown schedule", str(exc), status=404)
    except pauses.PauseConflict as exc:
        return envelope.error("already paused", str(exc), status=409)
    except ValueError as exc:
        return envelope.error("bad pause request", str(exc), status=400)
    await _reload(request)
    return envelope.success(f"schedule {schedule_id} paused", found.as_json())


async def resume(request: web.Request) -> web.Response:
    schedule_id = path_id(request, "schedule_id")
    body = await json_object(request, known=("by", "reason"))
    try:
        by = _by(body)
        found = await pauses.resume(runtime.runtime(request).store, schedule_id, by=by)
    except pauses.UnknownSchedule as exc:
        return envelope.error("unknown schedule", str(exc), status=404)
    except pauses.PauseConflict as exc:
        return envelope.error("not paused", str(exc), status=409)
    except ValueError as exc:
        return envelope.error("bad resume request", str(exc), status=400)
    await _reload(request)
    return envelope.success(f"schedule {schedule_id} resumed", found.as_json())
