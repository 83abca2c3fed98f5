"""Delivery routes: redeliver an execution's failed deliveries, test one delivery's target.

- `POST /api/execution/{execution_id}/redeliver`: re-runs only the deliveries (and for email only
  the recipients) whose last attempt failed; answers with what was re-run and the outcome.
- `POST /api/test-delivery/{delivery_id}`: connects and authenticates (SMTP NOOP, SFTP login,
  S3 HEAD bucket, a signed `ping` event to a webhook, a writable check of a file share); sends no
  report. A failed test is still a 200 answer whose `data.ok` is false, with the reason.

The ledger is the daemon's (`runtime.deliveries`), so retries it schedules wake the daemon's
retry worker; a daemon without one answers 503.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from reporthubd import secrets
from reporthubd.control import envelope, runtime
from reporthubd.control.params import path_id
from reporthubd.engine.ledger import LedgerError


async def redeliver(request: web.Request) -> web.Response:
    execution_id = request.match_info["execution_id"]
    if not 1 <= len(execution_id) <= 36:
        raise web.HTTPBadRequest(reason="bad execution id", text="not an execution id")
    try:
        result = await runtime.deliveries(request).redeliver(execution_id)
    except LedgerError as exc:
        return envelope.error("cannot redeliver", str(exc), status=exc.status)
    report = result.report
    data: dict[str, Any] = {
        "execution_id": execution_id,
        "redelivered": result.deliveries,
        "delivered": report.delivered,
        "failed": report.failed,
        "pending": report.pending,
        "status": result.status,
    }
    message = (
        f"{len(result.deliveries)} deliveries re-run"
        if result.deliveries
        else "nothing failed: nothing to redeliver"
    )
    return envelope.success(message, data)


async def test_delivery(request: web.Request) -> web.Response:
    delivery_id = path_id(request, "delivery_id")
    try:
        result = await runtime.deliveries(request).test_delivery(delivery_id)
    except LedgerError as exc:
        return envelope.error("cannot test delivery", str(exc), status=exc.status)
    data = {
        "delivery_id": delivery_id,
        "ok": result.ok,
        "target": result.target,
        "error": result.error,
        "retryable": result.retryable,
    }
    message = "delivery target reachable" if result.ok else "delivery test failed"
    return envelope.success(message, secrets.redact(data))
