"""The operator console: `/console` in a browser.

Two halves, so that no data is ever served to a request without the API token:

- `GET /console` and `GET /console/...` answer the same static shell (HTML, the console's own
  CSS and script under `/console/static/`), which holds no data and is served without a token.
  Its script keeps the operator's token in `sessionStorage` (this tab only) and sends it as
  `Authorization: Bearer` on every call; without a token the page says how to give one.
- `GET /api/console/view/<page>` answers the page's server-rendered HTML fragment, and
  `GET /api/console/events` a stream of server-sent events with the live runs (and one
  watched execution's state). Both sit behind the token gate like the rest of `/api`.

Actions are the API's own routes (execute, cancel, redeliver, pause, resume, backfill), called by
the script with the token in a header after a confirmation: no cookie is involved, so a foreign
site cannot ride on a session (no CSRF), and `origin.refuse_cross_site` refuses a cross-site
browser request to any unsafe method besides. The shell sends a Content-Security-Policy that
allows this origin only: no external fetch, no inline script.
"""

from __future__ import annotations

import asyncio
import importlib.resources
import json
from typing import Any

from aiohttp import web

from reporthubd.control import console_views as views
from reporthubd.control import envelope
from reporthubd.control.params import MAX_ID
from reporthubd.control.runtime import runtime

SHELL_PREFIX = "/console"
"""The shell and its static files: served without a token (they hold no data)."""

EVENT_TICK_SECONDS = 1.0
"""Server-sent events are a snapshot a second: the store is the truth for runs of every node,
and one small indexed query a second per open console is cheap."""
EVENT_STREAM_SECONDS = 300.0
"""A stream ends after this long, or (without a watched execution) as soon as nothing runs; the
page's script reconnects two seconds later (no handler lives for ever, a stop of the daemon
never waits on a forgotten tab, and an idle console costs one snapshot every few seconds)."""

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


def is_shell_path(path: str) -> bool:
    return path == SHELL_PREFIX or path.startswith(SHELL_PREFIX + "/")


def _resource(*parts: str) -> bytes:
    return importlib.resources.files("reporthubd.control").joinpath(*parts).read_bytes()


async def shell(request: web.Request) -> web.Response:
    body = await asyncio.to_thread(_resource, "templates", "shell.html")
    return web.Response(
        body=body, content_type="text/html", charset="utf-8", headers=SECURITY_HEADERS
    )


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    suffix = name[name.rfind(".") :] if "." in name else ""
    if name not in {"console.js", "console.css"}:
        raise web.HTTPNotFound(text=f"no static file {name}")
    body = await asyncio.to_thread(_resource, "static", name)
    return web.Response(
        body=body,
        headers={**SECURITY_HEADERS, "Content-Type": STATIC_TYPES[suffix]},
    )


BACKFILL_ROUTE = "/api/schedules/{schedule_id}/backfill"


def _serves(request: web.Request, method: str, canonical: str) -> bool:
    """Whether this daemon has the route (the console shows the actions it can take)."""
    return any(
        route.method.lower() == method
        and route.resource is not None
        and route.resource.canonical == canonical
        for route in request.app.router.routes()
    )


def _fragment(html: str) -> web.Response:
    return web.Response(
        text=html, content_type="text/html", charset="utf-8", headers=SECURITY_HEADERS
    )


async def view(request: web.Request) -> web.Response:
    daemon = runtime(request)
    parts = [p for p in request.match_info["page"].split("/") if p]
    try:
        if not parts:
            return _fragment(await views.overview(daemon))
        if len(parts) == 2 and parts[0] == "reports":
            if not parts[1].isdigit() or not 1 <= int(parts[1]) <= MAX_ID:
                raise views.NotFound(f"report {parts[1]!r} is not a report id")
            page = await views.report_page(
                daemon,
                int(parts[1]),
                views.filters(request.query),
                backfill=_serves(request, "post", BACKFILL_ROUTE),
            )
            return _fragment(page)
        if len(parts) == 2 and parts[0] == "runs" and 1 <= len(parts[1]) <= 36:
            return _fragment(await views.run_page(daemon, parts[1]))
    except views.BadFilter as exc:
        return envelope.error("bad request", str(exc), status=400)
    except views.NotFound as exc:
        return envelope.error("not found", str(exc), status=404)
    return envelope.error("not found", f"the console has no page {'/'.join(parts)}", status=404)


async def events(request: web.Request) -> web.StreamResponse:
    daemon = runtime(request)
    watched = request.query.get("execution_id") or None
    if watched is not None and len(watched) > 36:
        return envelope.error("bad request", "execution_id is not an execution id", status=400)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    loop = asyncio.get_running_loop()
    ends = loop.time() + EVENT_STREAM_SECONDS
    while not daemon.draining and loop.time() < ends:
        snapshot: dict[str, Any] = await views.live_snapshot(daemon, watched)
        data = json.dumps(snapshot, separators=(",", ":"), default=str)
        await response.write(f"event: runs\ndata: {data}\n\n".encode())
        watched_state = snapshot.get("watched")
        if watched is not None and (watched_state is None or watched_state["terminal"]):
            break
        if watched is None and not snapshot["runs"]:
            break  # nothing runs: the page asks again in a moment (no stream idles open)
        await asyncio.sleep(EVENT_TICK_SECONDS)
    await response.write(b"event: end\ndata: {}\n\n")
    return response


def add_routes(app: web.Application) -> None:
    app.router.add_get(SHELL_PREFIX, shell)
    app.router.add_get(SHELL_PREFIX + "/static/{name}", static)
    app.router.add_get(SHELL_PREFIX + "/{tail:.*}", shell)
    app.router.add_get("/api/console/view/{page:.*}", view)
    app.router.add_get("/api/console/events", events)
