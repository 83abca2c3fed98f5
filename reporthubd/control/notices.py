"""Notices through the API (issue 17): GET /api/notices, the notice ledger (who was told what,
when, with which status and error), filtered by execution_id, config_id, schedule_id,
incident_key or status; GET /api/reports/{config_id}/notify, who is told about a report's runs
(its owners and rules, or the configured default rule) with any problem of its stored rules
named by key. Guarded by the API token like every route but the health checks."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from reporthubd.control import envelope, runtime
from reporthubd.control.params import MAX_ID, path_id
from reporthubd.notify import report_rules
from reporthubd.notify_rules import Rule, RuleError
from reporthubd.store import incidents, notices

STATUSES = (notices.PENDING, notices.SENDING, notices.SENT, notices.RETRYING, notices.FAILED)
FILTERS = ("execution_id", "config_id", "schedule_id", "incident_key", "status", "limit")
MAX_LIMIT = 500


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/notices", list_notices)
    app.router.add_get("/api/reports/{config_id}/notify", report_notify)


def _bad(key: str, text: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(reason=f"bad {key}", text=f"{key}: {text}")


def _id(request: web.Request, key: str) -> int | None:
    raw = request.query.get(key)
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_ID:
        raise _bad(key, "must be a positive integer")
    return int(raw)


def _text(request: web.Request, key: str, limit: int) -> str | None:
    raw = request.query.get(key)
    if raw is not None and not 0 < len(raw) <= limit:
        raise _bad(key, f"must be 1 to {limit} characters")
    return raw


def notice_json(notice: notices.Notice) -> dict[str, Any]:
    def iso(value: Any) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "id": notice.id,
        "incident_key": notice.incident_key,
        "event": notice.event,
        "target": notice.target,
        "sequence": notice.sequence,
        "config_id": notice.config_id,
        "schedule_id": notice.schedule_id,
        "execution_id": notice.execution_id,
        "message": notice.message,
        "status": notice.status,
        "attempt": notice.attempt,
        "node_id": notice.node_id,
        "next_attempt_at": iso(notice.next_attempt_at),
        "error_message": notice.error_message,
        "created_at": iso(notice.created_at),
        "sent_at": iso(notice.sent_at),
    }


async def list_notices(request: web.Request) -> web.Response:
    unknown = sorted(set(request.query) - set(FILTERS))
    if unknown:
        raise _bad(unknown[0], f"unknown query parameter (known: {', '.join(FILTERS)})")
    status = request.query.get("status")
    if status is not None and status.upper() not in STATUSES:
        raise _bad("status", f"unknown status {status!r} (known: {', '.join(STATUSES)})")
    limit = _id(request, "limit") or 100
    if limit > MAX_LIMIT:
        raise _bad("limit", f"at most {MAX_LIMIT}")
    found = await notices.recent(
        runtime.runtime(request).store,
        execution_id=_text(request, "execution_id", 36),
        config_id=_id(request, "config_id"),
        schedule_id=_id(request, "schedule_id"),
        incident_key=_text(request, "incident_key", 255),
        status=status.upper() if status is not None else None,
        limit=limit,
    )
    return envelope.success(f"{len(found)} notices", {"notices": [notice_json(n) for n in found]})


def _rule_json(rule: Rule, owners: tuple[str, ...]) -> dict[str, Any]:
    return {
        "events": sorted(event.value for event in rule.events),
        "notify": list(rule.targets),
        "targets": report_rules.targets(rule, owners),
        "remind_every_minutes": rule.remind_every_seconds // 60
        if rule.remind_every_seconds is not None
        else None,
        "suspend_after": rule.suspend_after,
    }


async def report_notify(request: web.Request) -> web.Response:
    config_id = path_id(request, "config_id")
    state = runtime.runtime(request)
    found = await incidents.report_notify(state.store, config_id)
    if found is None:
        return envelope.error(
            "unknown report", f"config_id: no report {config_id} in report_configs", status=404
        )
    name, raw = found
    problem = None
    try:
        own = report_rules.parse_notify(raw, key="notify")
    except RuleError as exc:
        problem, own = str(exc), report_rules.ReportNotify()
    default = state.settings.notifications.default
    rules = report_rules.effective_rules(own, default)
    return envelope.success(
        f"who is told about {name}",
        {
            "config_id": config_id,
            "report_name": name,
            "owners": list(own.owners),
            "uses_default_rule": not own.rules and default is not None,
            "rules": [_rule_json(rule, own.owners) for rule in rules],
            "problem": problem,
        },
    )
