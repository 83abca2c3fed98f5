"""Backfills over the API: `POST /api/schedules/{schedule_id}/backfill` with {"from", "to",
"reprocess", "dry_run", "deliver", "concurrency", "by"} plans a backfill (a dry run answers the
plan only) and records it; `GET /api/backfills/{backfill_id}` answers its progress (done, total,
failed, running); `GET /api/backfills` (optionally `?schedule_id=`) the latest ones;
`POST /api/backfills/{backfill_id}/cancel` with {"by"} stops it. The rules are the scheduler's
(scheduler/backfill.py); any node's backfill runner takes a recorded backfill on. Behind the
API token like every route but the health checks.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from html import escape

from aiohttp import web

from reporthubd.control import envelope, runtime
from reporthubd.control.params import MAX_ID, json_object, path_id
from reporthubd.scheduler import backfill
from reporthubd.store import backfills
from reporthubd.store.database import Store

DEFAULT_BY = "api"


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/schedules/{schedule_id}/backfill", request_backfill)
    app.router.add_get("/api/backfills", list_backfills)
    app.router.add_get("/api/backfills/{backfill_id}", get_backfill)
    app.router.add_post("/api/backfills/{backfill_id}/cancel", cancel_backfill)


async def request_backfill(request: web.Request) -> web.Response:
    schedule_id = path_id(request, "schedule_id")
    body = await json_object(request, known=backfill.REQUEST_KEYS)
    body.setdefault("by", DEFAULT_BY)
    daemon = runtime.runtime(request)
    try:
        requested = await backfill.request(daemon.store, daemon.settings, schedule_id, body)
    except backfills.UnknownSchedule as exc:
        return envelope.error("unknown schedule", str(exc), status=404)
    except backfills.BackfillConflict as exc:
        return envelope.error("backfill running", str(exc), status=409)
    except ValueError as exc:
        return envelope.error("bad backfill request", str(exc), status=400)
    data = requested.as_json()
    if requested.backfill_id is None:
        runs = len(requested.plan.to_run)
        message = f"dry run: {runs} fires would run" if requested.dry_run else "nothing to run"
        return envelope.success(message, data)
    return envelope.success(f"backfill {requested.backfill_id} recorded", data, status=201)


def _backfill_id(request: web.Request) -> str:
    raw = request.match_info["backfill_id"]
    if not (0 < len(raw) <= 36 and raw.isascii() and all(c.isalnum() or c == "-" for c in raw)):
        raise web.HTTPBadRequest(reason="bad backfill_id", text="backfill_id: not a backfill id")
    return raw


async def get_backfill(request: web.Request) -> web.Response:
    backfill_id = _backfill_id(request)
    try:
        found = await backfills.progress(runtime.runtime(request).store, backfill_id)
    except backfills.UnknownBackfill as exc:
        return envelope.error("unknown backfill", str(exc), status=404)
    return envelope.success(f"backfill {backfill_id} {found.backfill.status}", found.as_json())


async def list_backfills(request: web.Request) -> web.Response:
    raw = request.query.get("schedule_id")
    schedule_id = None
    if raw is not None:
        if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_ID:
            return envelope.error(
                "bad query", "schedule_id: must be a positive integer", status=400
            )
        schedule_id = int(raw)
    found = await backfills.recent(runtime.runtime(request).store, schedule_id=schedule_id)
    return envelope.success(
        f"{len(found)} backfills", {"backfills": [item.as_json() for item in found]}
    )


async def cancel_backfill(request: web.Request) -> web.Response:
    backfill_id = _backfill_id(request)
    body = await json_object(request, known=("by",))
    by = body.get("by", DEFAULT_BY)
    if not isinstance(by, str) or not by.strip() or len(by) > backfill.MAX_BY:
        return envelope.error(
            "bad cancel request",
            f"by: must be non-empty text of at most {backfill.MAX_BY} characters",
            status=400,
        )
    try:
        found = await backfills.cancel(runtime.runtime(request).store, backfill_id, by=by)
    except backfills.UnknownBackfill as exc:
        return envelope.error("unknown backfill", str(exc), status=404)
    except backfills.BackfillConflict as exc:
        return envelope.error("backfill ended", str(exc), status=409)
    progress = await backfills.progress(runtime.runtime(request).store, found.id)
    return envelope.success(f"backfill {backfill_id} cancelled", progress.as_json())


# -- on the status page (control/status_page.py) ------------------------------------------------

# (header, hidden on narrow screens)
STATUS_COLUMNS = [
    ("Backfill", True),
    ("Report", False),
    ("Range", True),
    ("Reprocess", True),
    ("Status", False),
    ("Progress", False),
    ("Node", True),
]
STATUS_PAGE_LIMIT = 10


async def status_rows(store: Store, names: Mapping[int, str]) -> list[list[str]]:
    """The latest backfills (open ones first) as escaped cells of STATUS_COLUMNS."""
    rows = []
    for item in await backfills.recent(store, limit=STATUS_PAGE_LIMIT):
        b = item.backfill
        last = b.range_to - timedelta(seconds=1)
        rows.append(
            [
                f"<code>{escape(b.id)}</code>",
                escape(names.get(b.config_id, str(b.config_id))),
                escape(f"{b.range_from:%Y-%m-%d %H:%M} – {last:%Y-%m-%d %H:%M} UTC"),
                escape(b.reprocess.value + ("" if b.deliver else ", no delivery")),
                escape(b.status),
                escape(
                    f"{item.done}/{b.total} done · {item.failed} failed · {item.running} running"
                ),
                escape(b.node_id or "—"),
            ]
        )
    return rows
