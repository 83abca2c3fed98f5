"""Routes of the control plane. Handlers read the daemon through `control.runtime` only."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import sqlalchemy as sa
from aiohttp import web

from reporthubd import logs, metrics
from reporthubd.control import alerts as alert_routes
from reporthubd.control import audiences as audience_routes
from reporthubd.control import backfills as backfill_routes
from reporthubd.control import console, deliveries, envelope, openapi, origin
from reporthubd.control import datasources as datasources_routes
from reporthubd.control import executions as executions_routes
from reporthubd.control import history as history_routes
from reporthubd.control import notices as notice_routes
from reporthubd.control import scheduler as scheduler_routes
from reporthubd.control import schedules as schedule_routes
from reporthubd.control import waits as wait_routes
from reporthubd.control.auth import TokenGate
from reporthubd.control.runtime import RUNTIME_KEY, Runtime, runtime
from reporthubd.control.status_page import status_page
from reporthubd.store.database import StoreUnavailable
from reporthubd.store.executions import InvalidExecutionRow

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
log = logs.get(__name__)


async def healthz(request: web.Request) -> web.Response:
    daemon = runtime(request)
    return envelope.success(
        "alive", {"node_id": daemon.node_id, "started_at": daemon.started_at.isoformat()}
    )


async def prometheus(request: web.Request) -> web.Response:
    body = await asyncio.to_thread(metrics.render)
    return web.Response(body=body, headers={"Content-Type": metrics.CONTENT_TYPE})


async def openapi_document(request: web.Request) -> web.Response:
    return web.json_response(openapi.spec())


async def readyz(request: web.Request) -> web.Response:
    daemon = runtime(request)
    if daemon.draining:
        return envelope.error("not ready", "draining: the daemon is stopping", status=503)
    journal = daemon.store.journal
    try:
        await daemon.store.ping()
    except StoreUnavailable as exc:
        return envelope.error("not ready", str(exc), status=503)
    waiting = journal.pending if journal is not None else 0
    return envelope.success("ready", {"store": "up", "journal_pending": waiting})


@web.middleware
async def envelope_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn aiohttp's plain-text HTTP errors into the envelope; never leak a traceback."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        answer = envelope.error(exc.reason, exc.text or exc.reason, status=exc.status)
        for header in ("Allow", "Retry-After", "WWW-Authenticate"):
            if header in exc.headers:
                answer.headers[header] = exc.headers[header]
        return answer
    except (StoreUnavailable, sa.exc.OperationalError, sa.exc.InterfaceError, OSError) as exc:
        # The store's server is down or unreachable: a condition to wait out, not a bug.
        log.warning("store unavailable for a request", path=request.path, error=str(exc)[:200])
        return envelope.error(
            "store unavailable", "the store cannot be reached; try again shortly", status=503
        )
    except InvalidExecutionRow as exc:
        return envelope.error("invalid execution row", str(exc), status=422)
    except Exception:
        log.exception("control plane handler failed", path=request.path, method=request.method)
        return envelope.error(
            "internal error", "the request failed inside reporthubd; see its log", status=500
        )


@web.middleware
async def webhook_loop_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse requests sent by a reporthubd webhook delivery (they carry X-Reporthub-Event): a
    webhook pointed at a control plane (this node's or another's) would start a run per delivery,
    whose delivery starts another, for ever. The webhook fails for good with this answer."""
    if "X-Reporthub-Event" in request.headers:
        return envelope.error(
            "loop refused",
            "a reporthubd webhook delivery may not call a reporthubd control plane "
            "(it would start a loop of runs); point the webhook at a receiver",
            status=403,
        )
    return await handler(request)


def build_app(
    daemon: Runtime, *, max_body_bytes: int, gate: TokenGate | None = None
) -> web.Application:
    middlewares = [envelope_errors, webhook_loop_guard, origin.refuse_cross_site] + (
        [gate.middleware] if gate is not None else []
    )
    app = web.Application(client_max_size=max_body_bytes, middlewares=middlewares)
    app[RUNTIME_KEY] = daemon
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    executions_routes.add_routes(app)
    audience_routes.add_routes(app)
    app.router.add_get("/metrics", prometheus)
    app.router.add_get("/api/openapi.json", openapi_document)
    app.router.add_get("/", status_page)
    history_routes.add_routes(app)
    datasources_routes.add_routes(app)
    app.router.add_post("/api/execution/{execution_id}/redeliver", deliveries.redeliver)
    app.router.add_post("/api/test-delivery/{delivery_id}", deliveries.test_delivery)
    scheduler_routes.add_routes(app)
    schedule_routes.add_routes(app)
    notice_routes.add_routes(app)
    alert_routes.add_routes(app)
    backfill_routes.add_routes(app)
    wait_routes.add_routes(app)
    console.add_routes(app)
    return app
