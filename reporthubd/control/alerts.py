"""A report's conditional alert through the API (issue 17, item 2): GET
/api/reports/{config_id}/alert, its condition and send mode as stored (with any problem named
by key) and its alert state (the last truth, the last delivered file and run) from
report_alert_states. Each run's value and decision are on the execution (GET
/api/execution/{id}). Guarded by the API token like every route but the health checks."""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from reporthubd import alert_rules
from reporthubd.control import envelope, runtime
from reporthubd.control.params import path_id
from reporthubd.store import alerts


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/reports/{config_id}/alert", report_alert)


async def report_alert(request: web.Request) -> web.Response:
    config_id = path_id(request, "config_id")
    store = runtime.runtime(request).store
    found = await alerts.report_alert(store, config_id)
    if found is None:
        return envelope.error(
            "unknown report", f"config_id: no report {config_id} in report_configs", status=404
        )
    name, raw = found
    problem = None
    parsed: alert_rules.Alert | None = None
    if raw is not None:
        try:
            if not isinstance(raw, Mapping):
                raise alert_rules.AlertError("alert: must be an object")
            parsed = alert_rules.parse_alert(raw, key="alert")
        except alert_rules.AlertError as exc:
            problem = str(exc)
    state = await alerts.state(store, config_id)
    return envelope.success(
        f"the alert of {name}",
        {
            "config_id": config_id,
            "report_name": name,
            "alert": raw if isinstance(raw, dict) else None,
            "mode": parsed.mode.value if parsed is not None else None,
            "condition": parsed.condition.describe()
            if parsed is not None and parsed.condition is not None
            else None,
            "problem": problem,
            "state": {
                "last_truth": state.last_truth,
                "last_execution_id": state.last_execution_id,
                "delivered_sha256": state.delivered_sha256,
                "delivered_execution_id": state.delivered_execution_id,
            },
        },
    )
