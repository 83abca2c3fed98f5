"""Data-driven runs over HTTP:

- `POST /api/audiences/{config_id}/dry-run` (body `{"parameters": {...}, "limit": N}`, both
  optional): the audiences the report's driver yields now, each with its key, recipients,
  parameters, overrides and targets; nothing is run, written or sent. 404 for a report without an
  active driver, 422 for a driver the run would refuse (the message names the column or key).
- `GET /api/execution/{execution_id}/audiences?offset=&limit=`: a data-driven run's counts
  (audiences, delivered, failed, skipped as empty, unfinished) and a page of its audiences, each
  with its child execution's id. 404 for a run that is no data-driven run.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from reporthubd import secrets
from reporthubd.connectors import base as connectors
from reporthubd.control import envelope
from reporthubd.control.params import json_object, path_id
from reporthubd.control.runtime import runtime
from reporthubd.engine import audience_targets, audiences, dryrun
from reporthubd.store import audiences as audience_rows
from reporthubd.store import executions

PAGE_LIMIT = 1000


async def dry_run(request: web.Request) -> web.Response:
    config_id = path_id(request, "config_id")
    body = await json_object(request, known=("parameters", "limit"))
    parameters = body.get("parameters") or {}
    if not isinstance(parameters, dict):
        return envelope.error("bad body", "parameters must be a JSON object", status=400)
    limit = body.get("limit")
    if isinstance(limit, float) and limit.is_integer():
        limit = int(limit)  # JSON has one number type: 5.0 is the integer 5 (JSON Schema agrees)
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
        return envelope.error("bad body", "limit must be a non-negative integer", status=400)
    state = runtime(request)
    try:
        listing = await dryrun.dry_run(
            state.store, state.settings, config_id, parameters=parameters, limit=limit
        )
    except dryrun.NoDriver as exc:
        return envelope.error("not found", str(exc), status=404)
    except executions.DefinitionProblem as exc:
        return envelope.error("invalid definitions", str(exc), status=422)
    except audiences.AudienceProblem as exc:
        return envelope.error("invalid driver", str(exc), status=422)
    except (connectors.ConnectorError, OSError, secrets.SecretError) as exc:
        return envelope.error("driver query failed", str(exc), status=502)
    data = listing.as_json()
    return envelope.success(f"{data['count']} audiences (dry run: nothing was run)", data)


def _page(request: web.Request) -> tuple[int, int]:
    try:
        offset = int(request.query.get("offset", "0"))
        limit = int(request.query.get("limit", "100"))
    except ValueError:
        raise web.HTTPBadRequest(reason="bad query", text="offset and limit are integers") from None
    if offset < 0 or not 0 <= limit <= PAGE_LIMIT:
        raise web.HTTPBadRequest(
            reason="bad query", text=f"offset must be >= 0 and limit between 0 and {PAGE_LIMIT}"
        )
    return offset, limit


async def run_audiences(request: web.Request) -> web.Response:
    execution_id = request.match_info["execution_id"]
    offset, limit = _page(request)
    store = runtime(request).store
    execution = await executions.get_execution(store, execution_id)
    if execution is None:
        return envelope.error("not found", f"execution {execution_id} does not exist", status=404)
    burst_id = audience_rows.burst_id_of(execution)
    burst = await audience_rows.get_burst(store, burst_id)
    if burst is None:
        return envelope.error(
            "not found", f"execution {execution_id} is not a data-driven run", status=404
        )
    counts = await audience_rows.counts(store, burst_id)
    page = await audience_rows.list_audiences(store, burst_id, offset=offset, limit=limit)
    data: dict[str, Any] = {
        "execution_id": execution.id,
        "burst_id": burst_id,
        "status": execution.status.value,
        "enumerated": burst.enumerated_at is not None,
        "counts": counts.as_dict(),
        "offset": offset,
        "audiences": [
            {
                "key": a.key,
                "child_execution_id": a.child_id,
                **a.document(),
                # a webhook target's query is its credential (audience_targets.py)
                "recipients": [audience_targets.shown(r) for r in a.recipients],
            }
            for a in page
        ],
    }
    return envelope.success("data-driven run", data)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/audiences/{config_id}/dry-run", dry_run)
    app.router.add_get("/api/execution/{execution_id}/audiences", run_audiences)
