"""The console's views: each reads the store (and this node's engine for live progress) and
renders one server-side HTML fragment through a Jinja2 template with autoescape on.

Jinja2 is imported by the first rendering, not at start-up (the daemon's import budget).
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from reporthubd import domain
from reporthubd.control import console_plots as plots
from reporthubd.control.runtime import Runtime
from reporthubd.store import console as store_console
from reporthubd.store import delivery_logs, executions
from reporthubd.store import status as history
from reporthubd.timeutil import utcnow

if TYPE_CHECKING:
    import jinja2

PLOT_RUNS = 50
"""The duration and row plots show this many of a report's newest finished runs."""
CATCH_UP_SECONDS = 60.0
"""A fire that started later than this after its time is drawn as a catch-up, not on time."""
STATUSES = [s.value for s in domain.ExecutionStatus]
TRIGGERS = [t.value for t in domain.TriggerType]


class NotFound(LookupError):
    pass


class BadFilter(ValueError):
    pass


@functools.cache
def _environment() -> jinja2.Environment:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("reporthubd.control", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,  # a template is read and compiled once, not checked per request
    )
    env.filters["when"] = when
    env.filters["seconds"] = duration
    return env


def render(template: str, **context: Any) -> str:
    return _environment().get_template(template).render(**context)


def when(value: datetime | None) -> str:
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(value: float | None) -> str:
    if value is None:
        return "—"
    if value < 1:
        return f"{value * 1000:.0f} ms"  # a quick run reads "30 ms", not "0.0 s"
    if value < 60:
        return f"{value:.1f} s"
    minutes, secs = divmod(int(value), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def run_seconds(execution: domain.Execution) -> float | None:
    if execution.started_at is None or execution.finished_at is None:
        return None
    return (execution.finished_at - execution.started_at).total_seconds()


def _markup(svg: str) -> Any:
    import markupsafe

    return markupsafe.Markup(svg)  # built by console_plots, which escapes every text


async def overview(daemon: Runtime) -> str:
    store = daemon.store
    now = utcnow()
    reports = await store_console.reports(store)
    schedules = _next_fires(daemon, await store_console.schedules(store))
    strips = await store_console.strips(store, [r.config_id for r in reports], per_report=20)
    failures = await history.recent_failures(store, since=now - timedelta(hours=24), limit=20)
    late = await store_console.fire_lateness(
        store, since=now - timedelta(hours=24), catch_up_after_seconds=CATCH_UP_SECONDS
    )
    rates = await store_console.delivery_rates(store, since=now - timedelta(days=7))
    names = {r.config_id: r.name for r in reports}
    lateness = plots.series(
        "Fire lateness, last 24 h",
        "seconds late",
        [
            plots.Point(
                value=p.seconds,
                label=f"fire {when(p.scheduled_for)}" + (" (catch-up)" if p.catch_up else ""),
                bad=p.catch_up,
            )
            for p in late
        ],
        empty="no scheduled fires in the last 24 h",
    )
    success = plots.shares(
        "Delivery success rate per method, last 7 days",
        [
            plots.Bar(
                label=r.method,
                share=r.rate,
                note=f"{(r.rate or 0) * 100:.0f}% of {r.succeeded + r.failed}",
            )
            for r in rates
        ],
    )
    return render(
        "overview.html",
        reports=reports,
        schedules_by_report={
            r.config_id: [s for s in schedules if s.config_id == r.config_id] for r in reports
        },
        strips=strips,
        failures=failures,
        names=names,
        active=await live_runs(daemon),
        lateness_svg=_markup(lateness),
        lateness=late,
        catch_ups=sum(1 for p in late if p.catch_up),
        success_svg=_markup(success),
        rates=rates,
        now=now,
    )


@dataclass(frozen=True, kw_only=True)
class Filters:
    statuses: tuple[str, ...] = ()
    triggers: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    after: store_console.Cursor | None = None
    before: store_console.Cursor | None = None
    limit: int = 50

    def query_text(self, **change: str | None) -> str:
        """The page's query string with `change` applied (None removes a key)."""
        import urllib.parse

        pairs: dict[str, str] = {}
        if self.statuses:
            pairs["status"] = ",".join(self.statuses)
        if self.triggers:
            pairs["trigger"] = ",".join(self.triggers)
        if self.since is not None:
            pairs["since"] = self.since.strftime("%Y-%m-%dT%H:%M")
        if self.until is not None:
            pairs["until"] = self.until.strftime("%Y-%m-%dT%H:%M")
        if self.limit != 50:
            pairs["limit"] = str(self.limit)
        for key, value in change.items():
            if value is None:
                pairs.pop(key, None)
            else:
                pairs[key] = value
        return "?" + urllib.parse.urlencode(pairs) if pairs else ""


def _words(raw: list[str], known: list[str], key: str) -> tuple[str, ...]:
    words = tuple(w.strip() for part in raw for w in part.split(",") if w.strip())
    unknown = [w for w in words if w not in known]
    if unknown:
        raise BadFilter(
            f"{key}: unknown {', '.join(map(repr, unknown))} (known: {', '.join(known)})"
        )
    return words


def _time(raw: str | None, key: str) -> datetime | None:
    """A filter time: ISO 8601; without an offset (a datetime-local field) it is UTC."""
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise BadFilter(f"{key} must be a time like 2026-12-01T09:00, got {raw!r}") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def filters(query: Any) -> Filters:
    """Parse the history filters of a query string (a MultiDict); BadFilter names the key."""

    def cursor(key: str) -> store_console.Cursor | None:
        raw = query.get(key)
        if not raw:
            return None
        try:
            return store_console.Cursor.parse(raw)
        except ValueError:
            raise BadFilter(f"{key} is not a page position this console wrote") from None

    raw_limit = query.get("limit") or "50"
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 200:
        raise BadFilter(f"limit must be 1-200, got {raw_limit!r}")
    statuses = _words(query.getall("status", []), STATUSES, "status")
    return Filters(
        statuses=statuses,
        triggers=_words(query.getall("trigger", []), TRIGGERS, "trigger"),
        since=_time(query.get("since"), "since"),
        until=_time(query.get("until"), "until"),
        after=cursor("after"),
        before=cursor("before"),
        limit=int(raw_limit),
    )


async def report_page(
    daemon: Runtime, config_id: int, chosen: Filters, *, backfill: bool = False
) -> str:
    """`backfill`: the daemon serves POST /api/schedules/{id}/backfill (the form shows)."""
    query = store_console.HistoryQuery(
        config_id=config_id,
        statuses=chosen.statuses,
        triggers=chosen.triggers,
        since=chosen.since,
        until=chosen.until,
        after=chosen.after,
        before=chosen.before,
        limit=chosen.limit,
    )

    async with store_console.reading(daemon.store) as conn:  # one checkout for five reads
        found = await store_console.report(conn, config_id)
        page = await store_console.history_page(conn, query)
        recent = await store_console.recent_runs(conn, config_id, last=PLOT_RUNS)
        schedules = _next_fires(daemon, await store_console.schedules(conn, config_id))
        active = await store_console.active_runs(conn, config_id)
    if found is None:
        raise NotFound(f"report {config_id} does not exist")
    durations = plots.series(
        f"Duration of the last {PLOT_RUNS} runs",
        "seconds",
        [
            plots.Point(
                value=p.seconds,
                label=f"{when(p.created_at)} {p.status}",
                bad=p.status in history.FAILURE_STATUSES,
            )
            for p in recent
        ],
    )
    rows = plots.series(
        f"Rows of the last {PLOT_RUNS} runs",
        "rows",
        [
            plots.Point(
                value=float(p.rows) if p.rows is not None else None,
                label=f"{when(p.created_at)} {p.status}",
                bad=p.status in history.FAILURE_STATUSES,
            )
            for p in recent
        ],
    )
    return render(
        "report.html",
        report=found,
        schedules=schedules,
        page=page,
        chosen=chosen,
        statuses=STATUSES,
        triggers=TRIGGERS,
        run_seconds=run_seconds,
        durations_svg=_markup(durations),
        rows_svg=_markup(rows),
        recent=recent,
        default_parameters=json.dumps(found.parameters, indent=1, default=str),
        backfill=backfill,
        active=[
            {
                "execution_id": run.id,
                "config_id": run.config_id,
                "status": run.status.value,
                "node_id": run.node_id,
                "progress": progress_of(daemon, run.id),
            }
            for run in active
        ],
    )


async def run_page(daemon: Runtime, execution_id: str) -> str:
    store = daemon.store
    execution = await executions.get_execution(store, execution_id)
    if execution is None:
        raise NotFound(f"execution {execution_id} does not exist")
    found = await store_console.report(store, execution.config_id)
    logs = await delivery_logs.logs_for_execution(store, execution_id)
    targets = await store_console.deliveries(store, sorted({log.delivery_id for log in logs}))
    ledger: dict[int, list[delivery_logs.DeliveryLog]] = {}
    for log in sorted(logs, key=lambda entry: (entry.delivery_id, entry.attempt, entry.id)):
        ledger.setdefault(log.delivery_id, []).append(log)
    last_failed = [
        delivery_id
        for delivery_id, attempts in ledger.items()
        if attempts[-1].status.value == "FAILED"
    ]
    return render(
        "run.html",
        execution=execution,
        report=found,
        seconds=run_seconds(execution),
        parameters=json.dumps(dict(execution.parameters), indent=1, default=str),
        ledger=ledger,
        targets=targets,
        last_failed=last_failed,
        chain=await store_console.recovery_chain(store, execution),
        progress=progress_of(daemon, execution_id),
    )


def _next_fires(
    daemon: Runtime, rows: list[store_console.ScheduleRow]
) -> list[store_console.ScheduleRow]:
    """Each schedule's next fire as this node's scheduler has it, where it has one: the stored
    next_run_at is written only with a claim (a schedule that has not fired yet has none)."""
    scheduler = daemon.scheduler
    if scheduler is None:
        return rows
    out = []
    for row in rows:
        upcoming = scheduler.next_fire_of(row.schedule_id) if row.is_active else None
        out.append(dataclasses.replace(row, next_run_at=upcoming or row.next_run_at))
    return out


def progress_of(daemon: Runtime, execution_id: str) -> dict[str, Any] | None:
    engine = daemon.engine
    progress = engine.progress(execution_id) if engine is not None else None
    if progress is None:
        return None
    return {
        "phase": progress.phase,
        "rows": progress.rows,
        "bytes": progress.bytes,
        "elapsed_seconds": round(progress.elapsed(), 1),
    }


async def live_runs(daemon: Runtime) -> list[dict[str, Any]]:
    """PENDING and RUNNING executions (of every node), with this node's progress of its own."""
    active = await history.active_runs(daemon.store, limit=100)
    names = (
        {r.config_id: r.name for r in await store_console.reports(daemon.store)} if active else {}
    )
    return [
        {
            "execution_id": run.execution_id,
            "config_id": run.config_id,
            "report": names.get(run.config_id, str(run.config_id)),
            "status": run.status,
            "node_id": run.node_id,
            "started_at": run.started_at.isoformat() if run.started_at else None,
            "progress": progress_of(daemon, run.execution_id),
        }
        for run in active
    ]


async def live_snapshot(daemon: Runtime, watched: str | None) -> dict[str, Any]:
    """One server-sent event: the active runs, and the watched execution's state."""
    snapshot: dict[str, Any] = {"at": utcnow().isoformat(), "runs": await live_runs(daemon)}
    if watched:
        execution = await executions.get_execution(daemon.store, watched)
        snapshot["watched"] = (
            None
            if execution is None
            else {
                "execution_id": execution.id,
                "status": execution.status.value,
                "terminal": execution.status.is_terminal,
                "row_count": execution.row_count,
                "progress": progress_of(daemon, execution.id),
            }
        )
    return snapshot
