"""`POST /api/test-datasource/{datasource_id}`: connect, report the server version and the
round-trip time. A failed test is still a 200 answer whose `data.ok` is false, with the reason
(it names host and database, never a secret); 404 for an unknown id, 422 for a row that is not
valid (with the problems)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web

from reporthubd import domain, secrets
from reporthubd.connectors import base as connectors
from reporthubd.control import envelope
from reporthubd.control.params import path_id
from reporthubd.control.runtime import runtime
from reporthubd.store.definitions import get_datasource

TEST_TIMEOUT_SECONDS = 30.0


async def test_datasource(request: web.Request) -> web.Response:
    datasource_id = path_id(request, "datasource_id")
    found = await get_datasource(runtime(request).store, datasource_id)
    if found is None:
        return envelope.error("not found", f"datasource {datasource_id} does not exist", status=404)
    if isinstance(found, domain.RowError):
        return envelope.error("invalid datasource", str(found), status=422)
    started = time.monotonic()
    data: dict[str, Any] = {"datasource_id": found.id, "name": found.name, "type": found.type}
    try:
        async with asyncio.timeout(TEST_TIMEOUT_SECONDS):
            connector_cls = await asyncio.to_thread(connectors.connector_class, found.type.value)
            connector = connector_cls(found)
            try:
                await connector.open()
                result = await connector.test()
            finally:
                await connector.close()
    except TimeoutError:
        data |= {"ok": False, "error": f"no answer within {TEST_TIMEOUT_SECONDS:.0f} s"}
    except (connectors.ConnectorError, OSError, secrets.SecretError) as exc:
        data |= {"ok": False, "error": str(exc)}
    else:
        data |= {
            "ok": result.ok,
            "server_version": result.server_version,
            "round_trip_ms": round(result.round_trip_ms, 2),
            "message": result.message,
        }
    data["elapsed_ms"] = round((time.monotonic() - started) * 1000, 1)
    message = "datasource reachable" if data["ok"] else "datasource test failed"
    return envelope.success(message, secrets.redact(data))


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/test-datasource/{datasource_id}", test_datasource)
