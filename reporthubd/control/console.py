"""The operator console: `/console` in a browser.

Two halves, so that no data is ever served to a request without the API token:

- `GET /console` and `GET /console/...` answer the same static shell (HTML, the console's own
  CSS and script under `/console/static/`), which holds no data and is served without a token.
  Its script keeps the operator's token in `sessionStorage` (this tab only) and sends it as
  `Authorization: Bearer` on every call; without a token the page says how to give one.
- `GET /api/console/view/<page>` answers the page's server-rendered HTML fragment, and
  `GET /api/console/events` a stream of server-sent events: this node's lifecycle events as
  they happen (control/live.py, a bounded queue per stream), a snapshot of the live runs (and
  one watched execution's state) after each, progress while runs go on, keep-alive comments
  while idle. Both sit behind the token gate like the rest of `/api`.

Actions are the API's own routes (execute, cancel, redeliver, pause, resume, backfill), called by
the script with the token in a header after a confirmation: no cookie is involved, so a foreign
site cannot ride on a session (no CSRF), and `origin.refuse_cross_site` refuses a cross-site
browser request to any unsafe method besides. The shell sends a Content-Security-Policy that
allows this origin only: no external fetch, no inline script.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import json
from typing import Any

from aiohttp import web

from reporthubd.control import console_views as views
from reporthubd.control import envelope, live
from reporthubd.control.params import MAX_ID
from reporthubd.control.runtime import Runtime, runtime

SHELL_PREFIX = "/console"
"""The shell and its static files: served without a token (they hold no data)."""

KEEPALIVE_SECONDS = 15.0
"""A comment line this often on an idle stream, so that proxies and the browser keep it open."""
PROGRESS_SECONDS = 1.0
"""While this node runs something, its rows-so-far go out this often (from memory: no store
read)."""
RESYNC_SECONDS = 15.0
"""While something runs, a fresh snapshot from the store this often: runs of other nodes (whose
events this node does not see) move on the page too."""
REMOTE_WATCH_SECONDS = 2.0
"""The same for a watched run of another node: its page follows it within this."""
END_EVENT_WAIT_SECONDS = 1.0
"""How long a run's stream waits for the run's last event after a snapshot showed its end."""
EVENT_STREAM_SECONDS = 300.0
"""A stream ends after this long, and the page's script reconnects two seconds later: no
handler lives for ever (each reconnection starts with a fresh snapshot)."""

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
FEED_KEY: web.AppKey[live.LiveFeed] = web.AppKey("console-live-feed")

STATIC_TYPES = {
    "console.js": "text/javascript; charset=utf-8",
    "console.css": "text/css; charset=utf-8",
}


def is_shell_path(path: str) -> bool:
    return path == SHELL_PREFIX or path.startswith(SHELL_PREFIX + "/")


ASSETS_KEY: web.AppKey[dict[str, bytes]] = web.AppKey("console-assets")
ASSETS = {"shell.html": ("templates", "shell.html"), **{n: ("static", n) for n in STATIC_TYPES}}
"""What the shell serves, read once when the app starts (never per request)."""


def _read_assets() -> dict[str, bytes]:
    files = importlib.resources.files("reporthubd.control")
    return {name: files.joinpath(*parts).read_bytes() for name, parts in ASSETS.items()}


async def _load_assets(app: web.Application) -> None:
    app[ASSETS_KEY] = await asyncio.to_thread(_read_assets)


async def shell(request: web.Request) -> web.Response:
    return web.Response(
        body=request.app[ASSETS_KEY]["shell.html"],
        content_type="text/html",
        charset="utf-8",
        headers=SECURITY_HEADERS,
    )


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in STATIC_TYPES:
        raise web.HTTPNotFound(text=f"no static file {name}")
    return web.Response(
        body=request.app[ASSETS_KEY][name],
        headers={**SECURITY_HEADERS, "Content-Type": STATIC_TYPES[name]},
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


def _sse(name: str, data: Any) -> bytes:
    return (
        f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'), default=str)}\n\n".encode()
    )


def _feed(request: web.Request) -> live.LiveFeed:
    """The app's live feed, made on the first stream (a daemon's lifecycle bus is there by
    then); closed when the app shuts down."""
    feed = request.app.get(FEED_KEY)
    if feed is None:
        feed = request.app[FEED_KEY] = live.LiveFeed(runtime(request).events)
    return feed


async def _close_feed(app: web.Application) -> None:
    feed = app.get(FEED_KEY)
    if feed is not None:
        feed.close()


async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: `runs` (a snapshot from the store: the active runs of every node, and
    the watched execution's state) first and after every change; `lifecycle` (one transition
    of this node, as it happens); `progress` (this node's rows so far, once a second while it
    runs something); `: keep-alive` comments while idle; `end` last."""
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
    with contextlib.suppress(ConnectionResetError):  # the page went away: nothing to send
        await _stream(request, response, daemon, watched)
    return response


async def _stream(
    request: web.Request, response: web.StreamResponse, daemon: Runtime, watched: str | None
) -> None:
    loop = asyncio.get_running_loop()
    ends = loop.time() + EVENT_STREAM_SECONDS
    # Subscribed before the first snapshot: a change made while it is read is not missed.
    with _feed(request).subscribe() as stream:
        snapshot: dict[str, Any] = await views.live_snapshot(daemon, watched)
        await response.write(_sse("runs", snapshot))
        resync_at = loop.time()
        local: list[str] = []
        ours = ended = False  # the watched run is this node's; its end was sent
        # An event-stream client (EventSource, the console's script) is followed while idle;
        # another (a generated client, a fuzzer) gets its answer once nothing runs.
        follow = "text/event-stream" in request.headers.get("Accept", "")
        while not daemon.draining and not _watch_over(watched, snapshot):
            if not (follow or watched or snapshot["runs"]):
                break
            if resync_at <= loop.time():
                remote = watched is not None and watched not in local
                resync_at = loop.time() + (REMOTE_WATCH_SECONDS if remote else RESYNC_SECONDS)
            now = loop.time()
            if now >= ends:
                break
            local = [r["execution_id"] for r in snapshot["runs"] if r["node_id"] == daemon.node_id]
            ours = ours or watched in local
            wait = PROGRESS_SECONDS if local else KEEPALIVE_SECONDS
            if snapshot["runs"] or watched is not None:
                wait = min(wait, resync_at - now)
            batch = await stream.next(min(wait, ends - now))
            if batch.closed:
                break
            # A run's page hears of its own run only; the other pages of every run.
            news = [e for e in batch.events if watched is None or e.execution_id == watched]
            for event in news:
                await response.write(_sse("lifecycle", live.event_data(event)))
                ended = ended or (event.execution_id == watched and event.new.is_terminal)
            due = (snapshot["runs"] or watched is not None) and loop.time() >= resync_at
            if news or batch.overflowed or due:
                snapshot = await views.live_snapshot(daemon, watched)
                await response.write(_sse("runs", snapshot))
                resync_at = loop.time()
            elif local:
                progress = {run_id: views.progress_of(daemon, run_id) for run_id in local}
                await response.write(_sse("progress", progress))
            else:
                await response.write(b": keep-alive\n\n")
        # A snapshot may see the watched run's end a moment before its event is published:
        # send that event too (this node's run only: others' never come here).
        until = loop.time() + END_EVENT_WAIT_SECONDS
        while ours and not ended and not daemon.draining and loop.time() < until:
            batch = await stream.next(until - loop.time())
            for event in batch.events:
                if event.execution_id == watched:
                    await response.write(_sse("lifecycle", live.event_data(event)))
                    ended = ended or event.new.is_terminal
            if batch.closed:
                break
    await response.write(b"event: end\ndata: {}\n\n")


def _watch_over(watched: str | None, snapshot: dict[str, Any]) -> bool:
    """A stream watching one execution ends once it is terminal (or unknown)."""
    if watched is None:
        return False
    state = snapshot.get("watched")
    return state is None or bool(state["terminal"])


def add_routes(app: web.Application) -> None:
    app.router.add_get(SHELL_PREFIX, shell)
    app.router.add_get(SHELL_PREFIX + "/static/{name}", static)
    app.router.add_get(SHELL_PREFIX + "/{tail:.*}", shell)
    app.router.add_get("/api/console/view/{page:.*}", view)
    app.router.add_get("/api/console/events", events)
    app.on_startup.append(_load_assets)
    app.on_shutdown.append(_close_feed)
