"""Scheduler routes: status, jobs, reload, manual trigger, and a schedule's next fires."""

from __future__ import annotations

from datetime import datetime

from aiohttp import web

from reporthubd.control import envelope, runtime
from reporthubd.control.params import json_object, path_id
from reporthubd.scheduler import views

MAX_NEXT = 1000


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/scheduler/status", status)
    app.router.add_get("/api/scheduler/jobs", jobs)
    app.router.add_post("/api/scheduler/reload", reload)
    app.router.add_post("/api/scheduler/trigger/{schedule_id}", trigger)
    app.router.add_get("/api/schedules/{schedule_id}/next", next_fires)


def _schedule_id(request: web.Request) -> int:
    return path_id(request, "schedule_id")


async def status(request: web.Request) -> web.Response:
    snapshot = await runtime.scheduler(request).snapshot()
    return envelope.success("scheduler status", views.status(snapshot))


async def jobs(request: web.Request) -> web.Response:
    found = views.jobs(await runtime.scheduler(request).job_snapshots())
    return envelope.success(f"{len(found)} schedules", {"jobs": found})


async def reload(request: web.Request) -> web.Response:
    report = await runtime.scheduler(request).reload(source="api")
    data = {
        "at": report.at.isoformat(),
        "ok": report.ok,
        "added": report.added,
        "changed": report.changed,
        "removed": report.removed,
        "disabled": report.disabled,
    }
    if not report.ok:
        return envelope.error("reload failed, previous schedules kept", report.message, status=503)
    return envelope.success(report.message, data)


async def trigger(request: web.Request) -> web.Response:
    scheduler = runtime.scheduler(request)
    schedule_id = _schedule_id(request)
    body = await json_object(request)
    scheduled_for = None
    if body.get("scheduled_for") is not None:
        try:
            scheduled_for = datetime.fromisoformat(str(body["scheduled_for"]))
        except ValueError:
            raise web.HTTPBadRequest(
                reason="bad scheduled_for", text="scheduled_for must be an ISO 8601 time"
            ) from None
        if scheduled_for.tzinfo is None:
            raise web.HTTPBadRequest(
                reason="bad scheduled_for",
                text="scheduled_for needs a UTC offset, e.g. 2026-11-29T09:00:00+01:00",
            )
    parameters = body.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise web.HTTPBadRequest(reason="bad parameters", text='"parameters" must be an object')
    try:
        execution_id = await scheduler.trigger(schedule_id, scheduled_for, parameters)
    except LookupError as exc:
        return envelope.error("cannot trigger", str(exc), status=404)
    return envelope.success(
        "triggered", {"execution_id": execution_id, "schedule_id": schedule_id}, status=202
    )


async def next_fires(request: web.Request) -> web.Response:
    scheduler = runtime.scheduler(request)
    schedule_id = _schedule_id(request)
    raw = request.query.get("n", "10")
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_NEXT:
        raise web.HTTPBadRequest(reason="bad n", text=f"n must be 1..{MAX_NEXT}")
    job = scheduler.job_snapshot(schedule_id)
    if job is None or job.schedule is None:
        if job is not None and job.disabled:
            return envelope.error("schedule disabled", job.disabled, status=409)
        return envelope.error(
            "unknown schedule", f"schedule {schedule_id} is not loaded", status=404
        )
    s = job.schedule
    fires = views.next_fires(s, job.taken_at, int(raw))
    return envelope.success(
        f"next {len(fires)} fires",
        {"schedule_id": schedule_id, "timezone": s.timezone.key, "fires": fires},
    )
