"""What the control plane shows of the scheduler: frozen snapshots the Scheduler hands out, and
the JSON of the status, jobs and next-fires views built from them.

A snapshot is copied out of the scheduler's live state at one instant (`taken_at`), so a view is
built without reaching into the Scheduler and without racing a reload that swaps the schedules
in meanwhile. The functions that turn snapshots into JSON are pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from reporthubd import domain
from reporthubd.calendars import CalendarFires
from reporthubd.cron import FireTimes, parse_cron
from reporthubd.scheduler import misfire, pausing, timetable


@dataclass(frozen=True, kw_only=True)
class DefinitionsReload:
    """The outcome of reading the definitions into the scheduler (at start, on SIGHUP or the
    API, or when the watcher saw them change). A failed reload keeps the previous schedules."""

    at: datetime
    source: str
    ok: bool
    message: str
    added: int = 0
    changed: int = 0
    removed: int = 0
    disabled: int = 0


@dataclass(frozen=True, kw_only=True)
class SchedulerSnapshot:
    node_id: str
    started_at: datetime
    taken_at: datetime
    schedules_loaded: int
    timelines: int
    disabled: Mapping[int, str]
    next_fire: tuple[datetime, int] | None
    """The next fire instant and how many schedules fire at it."""
    last_reload: DefinitionsReload | None
    fire_lateness: Mapping[str, float | int | None]
    """Fires claimed while due (stats.on_time): the scheduler's own promptness."""
    claimed: int
    skipped: int
    recovered: int
    adopted: int
    store_down_since: float | None
    active: Mapping[str, Mapping[str, int]]
    """PENDING and RUNNING executions per node, as the store showed them (at most 1 s old)."""
    store_error: str | None
    """Why `active` is empty: the store could not be read."""
    catch_up_lateness: Mapping[str, float | int | None] = field(default_factory=dict)
    """Fires decided after their on-time window and run late by policy (stats.catch_up)."""


@dataclass(frozen=True, kw_only=True)
class JobSnapshot:
    """One schedule as the scheduler holds it: loaded (`schedule`) or refused (`disabled`)."""

    schedule_id: int
    taken_at: datetime
    schedule: domain.Schedule | None = None
    disabled: str | None = None
    config_name: str | None = None
    next_fire: datetime | None = None
    last_fire: datetime | None = None
    last_status: str | None = None
    last_execution_id: str | None = None


def status(snapshot: SchedulerSnapshot) -> dict[str, Any]:
    """GET /api/scheduler/status."""
    upcoming = snapshot.next_fire
    reload = snapshot.last_reload
    mine = snapshot.active.get(snapshot.node_id, {})
    return {
        "node_id": snapshot.node_id,
        "started_at": snapshot.started_at.isoformat(),
        "uptime_seconds": round((snapshot.taken_at - snapshot.started_at).total_seconds(), 3),
        "schedules_loaded": snapshot.schedules_loaded,
        "timelines": snapshot.timelines,
        "schedules_disabled": [
            {"schedule_id": sid, "reason": why} for sid, why in sorted(snapshot.disabled.items())
        ],
        "next_fire": (
            {"at": upcoming[0].isoformat(), "schedules": upcoming[1]} if upcoming else None
        ),
        "last_reload": (
            {
                "at": reload.at.isoformat(),
                "source": reload.source,
                "ok": reload.ok,
                "message": reload.message,
            }
            if reload
            else None
        ),
        "fire_lateness": dict(snapshot.fire_lateness),
        "catch_up_lateness": dict(snapshot.catch_up_lateness),
        "claimed": snapshot.claimed,
        "skipped": snapshot.skipped,
        "recovered": snapshot.recovered,
        "adopted": snapshot.adopted,
        "store_down_since": (
            misfire.iso(snapshot.store_down_since) if snapshot.store_down_since else None
        ),
        "executions": {
            "running": mine.get(domain.ExecutionStatus.RUNNING.value, 0),
            "queued": mine.get(domain.ExecutionStatus.PENDING.value, 0),
            "all_nodes": {
                node: dict(counts) for node, counts in sorted(snapshot.active.items()) if node
            },
            "store_error": snapshot.store_error,
        },
    }


def jobs(snapshots: Sequence[JobSnapshot]) -> list[dict[str, Any]]:
    """GET /api/scheduler/jobs: every loaded or disabled schedule, in the order given."""
    return [_job(snapshot) for snapshot in snapshots]


def _job(snapshot: JobSnapshot) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "schedule_id": snapshot.schedule_id,
        "disabled": snapshot.disabled,
        "last_fire": snapshot.last_fire.isoformat() if snapshot.last_fire is not None else None,
        "last_status": snapshot.last_status,
        "last_execution_id": snapshot.last_execution_id,
    }
    s = snapshot.schedule
    if s is not None:
        nxt = snapshot.next_fire
        entry |= {
            "config_id": s.config_id,
            "config_name": snapshot.config_name,
            "cron_expression": s.cron_expression,
            "timezone": s.timezone.key,
            "misfire_policy": s.misfire_policy.value,
            "misfire_grace_seconds": s.misfire_grace_seconds,
            "calendar": s.calendar_name,
            "calendar_policy": s.calendar_policy.value if s.calendar_policy else None,
            "start_at": s.start_at.isoformat() if s.start_at else None,
            "end_at": s.end_at.isoformat() if s.end_at else None,
            "parameters": dict(s.parameters),
            "next_fire": nxt.isoformat() if nxt is not None else None,
            "next_fire_local": nxt.astimezone(s.timezone).isoformat() if nxt is not None else None,
            "paused": pause_state(s),
        }
    return entry


def pause_state(s: domain.Schedule) -> dict[str, Any] | None:
    """A paused schedule's who, why and since when (its fires are recorded SKIPPED), with
    the reason its fires carry; None while it runs."""
    if s.paused_at is None:
        return None
    return {
        "since": s.paused_at.isoformat(),
        "by": s.paused_by,
        "reason": s.paused_reason,
        "skip_reason": pausing.reason(s),
    }


def next_fires(schedule: domain.Schedule, after: datetime, count: int) -> list[dict[str, str]]:
    """GET /api/schedules/{id}/next: the schedule's next `count` fires after `after`, in UTC
    and in the schedule's zone. A schedule with a business calendar: each fire's status,
    reason and, for a shifted fire, where it runs (CalendarFires.describe)."""
    moved = timetable.fire_times(schedule)
    if isinstance(moved, CalendarFires):
        return moved.describe(after, count)
    times = FireTimes(
        parse_cron(schedule.cron_expression),
        schedule.timezone,
        start_at=schedule.start_at,
        end_at=schedule.end_at,
    )
    fires: list[dict[str, str]] = []
    if count < 1:
        return fires
    for fire in times.iter_after(after):
        fires.append(
            {"utc": fire.isoformat(), "local": fire.astimezone(schedule.timezone).isoformat()}
        )
        if len(fires) >= count:
            break
    return fires
