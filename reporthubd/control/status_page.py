"""The status page at `/`: server-rendered HTML, no JavaScript, refreshes itself, fits a phone.

Everything on it comes from the store (definitions and history) and from the daemon's components
when they are present (engine queue, scheduler's disabled schedules); every value is escaped.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, tzinfo
from html import escape

from aiohttp import web

from reporthubd import __version__
from reporthubd.control import backfills as backfill_view
from reporthubd.control import waits as wait_view
from reporthubd.control.runtime import runtime
from reporthubd.cron import CronError, next_fires, parse_cron
from reporthubd.engine.engine import Engine
from reporthubd.scheduler import pausing
from reporthubd.store import status as history
from reporthubd.store.definitions import load_definitions
from reporthubd.timeutil import utcnow

REFRESH_SECONDS = 15

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;padding:1rem;
background:#f7f7f8;color:#1d1d1f}h1{font-size:1.4rem;margin:0 0 .25rem}h2{font-size:1.1rem;
margin:1.5rem 0 .5rem}.meta{color:#555;font-size:.9rem}table{border-collapse:collapse;width:100%;
background:#fff;font-size:.9rem}th,td{text-align:left;padding:.4rem .5rem;border-bottom:1px solid
#e5e5e5;vertical-align:top}th{background:#efeff1}.strip{display:flex;gap:2px;flex-wrap:wrap}
.mark{width:10px;height:16px;border-radius:2px;display:inline-block}.COMPLETED{background:#2e9e4f}
.FAILED,.TIMEOUT{background:#d93025}.PARTIAL{background:#f29900}.RUNNING,.PENDING{background:#1a73e8}
.SKIPPED,.CANCELLED{background:#9aa0a6}.err{color:#a50e0e;white-space:pre-wrap;word-break:break-word}
.empty{color:#777;font-style:italic}.wrap{overflow-x:auto}
@media (max-width:640px){th.opt,td.opt{display:none}body{padding:.5rem}}
"""


# (header, hidden on narrow screens)
SCHEDULE_COLUMNS = [
    ("Report", False),
    ("Cron", False),
    ("Zone", True),
    ("Next fire", False),
    ("Last", True),
    ("Last 20 runs", False),
]
ACTIVE_COLUMNS = [
    ("Execution", True),
    ("Report", False),
    ("Status", False),
    ("Started", True),
    ("Progress", False),
    ("Node", True),
]
FAILURE_COLUMNS = [
    ("Finished", True),
    ("Report", False),
    ("Status", False),
    ("Reason", False),
    ("Execution", True),
]
RETRY_COLUMNS = [
    ("Execution", True),
    ("Delivery", False),
    ("Attempt", False),
    ("Next try", False),
    ("Last error", True),
]
INVALID_COLUMNS = [("Table", False), ("Id", False), ("Problem", False)]
TRANSITION_COLUMNS = [
    ("When", False),
    ("Report", False),
    ("Change", False),
    ("Why", True),
    ("Execution", True),
]
RECENT_TRANSITIONS = 20


def _progress(engine: Engine | None, execution_id: str, stored_rows: int | None) -> str:
    """Rows so far (and the phase) for a run of this node; the stored count for others."""
    progress = engine.progress(execution_id) if engine is not None else None
    if progress is None:
        return escape(str(stored_rows or 0))
    return escape(f"{progress.rows:,} rows · {progress.phase} · {progress.elapsed():.0f} s")


def _error_text(text: str | None) -> str:
    return f'<span class="err">{escape(text or "")}</span>'


def _t(value: datetime | None, zone: tzinfo = UTC) -> str:
    if value is None:
        return "—"
    return value.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S %Z")


def _ms(value: object) -> str:
    if not isinstance(value, int | float):
        return "—"
    return f"{value:,.0f} ms" if value < 10_000 else f"{value / 1000:,.0f} s"


def _lateness(on_time: Mapping[str, object], catch_up: Mapping[str, object]) -> str:
    """The scheduler's line: on-time fire lateness, and catch-up fires after downtime apart
    (one restart would otherwise make an on-time scheduler look minutes late)."""
    line = (
        f"fire lateness (on time) p50 {_ms(on_time.get('p50_ms'))} · "
        f"p99 {_ms(on_time.get('p99_ms'))} · {on_time.get('fires', 0)} fires"
    )
    if catch_up.get("fires"):
        line += (
            f" · caught up after downtime: {catch_up.get('fires')} fires, "
            f"p50 {_ms(catch_up.get('p50_ms'))} late, max {_ms(catch_up.get('max_ms'))}"
        )
    return f'<p class="meta" id="lateness">{escape(line)}</p>'


async def _scheduler_line(request: web.Request) -> str:
    scheduler = runtime(request).scheduler
    if scheduler is None:
        return ""
    snapshot = await scheduler.snapshot()
    return _lateness(snapshot.fire_lateness, snapshot.catch_up_lateness)


def _table(headers: list[tuple[str, bool]], rows: list[list[str]], empty: str) -> str:
    if not rows:
        return f'<p class="empty">{escape(empty)}</p>'
    head = "".join(f"<th{' class=opt' if opt else ''}>{escape(h)}</th>" for h, opt in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td{' class=opt' if headers[i][1] else ''}>{cell}</td>" for i, cell in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f'<div class="wrap"><table><tr>{head}</tr>{body}</table></div>'


async def status_page(request: web.Request) -> web.Response:
    daemon = runtime(request)
    store = daemon.store
    now = utcnow()
    definitions = await load_definitions(store, default_timezone=daemon.settings.scheduler.timezone)
    strips = await history.history_strips(store)
    active = await history.active_runs(store)
    failures = await history.recent_failures(store, since=now - timedelta(days=1))
    retries = await history.pending_retries(store)
    names = {cid: cfg.name for cid, cfg in definitions.configs.items()}

    schedule_rows = []
    for sched in sorted(definitions.schedules.values(), key=lambda s: s.id):
        try:
            spec = parse_cron(sched.cron_expression)
            upcoming = next_fires(
                spec, sched.timezone, now, 1, start_at=sched.start_at, end_at=sched.end_at
            )
        except CronError:
            upcoming = []
        strip = "".join(
            f'<span class="mark {escape(m.status)}" '
            f'title="{escape(m.status)} {escape(_t(m.created_at))}"></span>'
            for m in reversed(strips.get(sched.config_id, []))
        )
        last = strips.get(sched.config_id, [])
        next_cell = escape(_t(upcoming[0], sched.timezone)) if upcoming else "—"
        if sched.paused_at is not None:  # its fires are recorded SKIPPED, with this reason
            next_cell = f'<span class="paused">{escape(pausing.reason(sched))}</span>'
        schedule_rows.append(
            [
                escape(names.get(sched.config_id, str(sched.config_id))),
                f"<code>{escape(sched.cron_expression)}</code>",
                escape(str(sched.timezone)),
                next_cell,
                escape(last[0].status) if last else "—",
                f'<div class="strip">{strip}</div>',
            ]
        )
    disabled_rows = [
        [
            escape(e.table),
            escape(str(e.row_id)),
            _error_text("; ".join(e.problems)),
        ]
        for e in definitions.errors
    ]

    engine = daemon.engine
    queue = ""
    if engine is not None:
        stats = engine.stats()
        queue = f" · running {stats.running} · queued {stats.queued}"
    active_rows = [
        [
            f"<code>{escape(run.execution_id)}</code>",
            escape(names.get(run.config_id, str(run.config_id))),
            escape(run.status),
            escape(_t(run.started_at)),
            _progress(engine, run.execution_id, run.row_count),
            escape(run.node_id or "—"),
        ]
        for run in active
    ]
    failure_rows = [
        [
            escape(_t(f.finished_at)),
            escape(names.get(f.config_id, str(f.config_id))),
            escape(f.status),
            _error_text(f.error_message),
            f"<code>{escape(f.execution_id)}</code>",
        ]
        for f in failures
    ]
    retry_rows = [
        [
            f"<code>{escape(r.execution_id)}</code>",
            escape(str(r.delivery_id)),
            escape(str(r.attempt)),
            escape(_t(r.next_retry_at)),
            _error_text(r.error_message),
        ]
        for r in retries
    ]
    transition_rows = [
        [
            escape(_t(event.at)),
            escape(names.get(event.config_id, str(event.config_id))),
            escape(
                f"{event.transition.value}: {event.old.value if event.old else 'new'} → "
                f"{event.new.value}"
            ),
            _error_text(event.reason),
            f"<code>{escape(event.execution_id)}</code>",
        ]
        for event in daemon.transitions.latest(RECENT_TRANSITIONS)
    ]
    backfill_rows = await backfill_view.status_rows(store, names)
    wait_rows = await wait_view.status_rows(store, names)
    uptime = now - daemon.started_at
    scheduler_line = await _scheduler_line(request)
    body = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="{REFRESH_SECONDS}">
<title>reporthubd · {escape(daemon.node_id)}</title><style>{CSS}</style></head>
<body>
<h1>reporthubd</h1>
<p class="meta">node <b>{escape(daemon.node_id)}</b> · version {escape(__version__)} ·
up {escape(str(uptime).split(".")[0])} · {escape(_t(now))}{queue}</p>
{scheduler_line}
<h2>Schedules</h2>
{_table(SCHEDULE_COLUMNS, schedule_rows, "No active schedules.")}
<h2>Running and queued</h2>
{_table(ACTIVE_COLUMNS, active_rows, "Nothing running.")}
<h2>Waiting for dependencies</h2>
{_table(wait_view.STATUS_COLUMNS, wait_rows, "No run is waiting.")}
<h2>Backfills</h2>
{_table(backfill_view.STATUS_COLUMNS, backfill_rows, "No backfills.")}
<h2>Recent state changes (this node)</h2>
{_table(TRANSITION_COLUMNS, transition_rows, "No state change since this node started.")}
<h2>Recent failures (24 h)</h2>
{_table(FAILURE_COLUMNS, failure_rows, "No failures in the last 24 hours.")}
<h2>Delivery retries pending</h2>
{_table(RETRY_COLUMNS, retry_rows, "No retries pending.")}
<h2>Invalid definitions</h2>
{_table(INVALID_COLUMNS, disabled_rows, "All active definitions are valid.")}
</body></html>
"""
    return web.Response(text=body, content_type="text/html", charset="utf-8")
