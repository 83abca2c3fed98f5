"""Waiting runs over the API: `GET /api/waits` lists the runs that wait for their dependencies or
readiness probe (reporthubd/waits.py), with what they wait for, their deadline, their next check
and the last check's result; the status page shows the same (`status_rows`)."""

from __future__ import annotations

from collections.abc import Mapping
from html import escape

from aiohttp import web

from reporthubd.control import envelope, runtime
from reporthubd.store import waits
from reporthubd.store.database import Store


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/waits", list_waits)


async def list_waits(request: web.Request) -> web.Response:
    found = await waits.waiting(runtime.runtime(request).store)
    return envelope.success(
        f"{len(found)} runs waiting", {"waits": [item.as_json() for item in found]}
    )


# (header, hidden on narrow screens)
STATUS_COLUMNS = [
    ("Report", False),
    ("Fire", True),
    ("Waiting for", False),
    ("Deadline", False),
    ("Last check", True),
]


async def status_rows(store: Store, names: Mapping[int, str]) -> list[list[str]]:
    return [
        [
            escape(names.get(w.config_id, str(w.config_id))),
            escape(f"{w.scheduled_for:%Y-%m-%d %H:%M:%S} UTC"),
            escape(w.waiting_for or "—"),
            escape(f"{w.deadline_at:%Y-%m-%d %H:%M:%S} UTC"),
            escape(w.last_result or "not checked yet"),
        ]
        for w in await waits.waiting(store, limit=50)
    ]
