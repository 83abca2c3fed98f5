"""What `reporthubd check` says about notices: each active report's notify object and each
active schedule's deadline that the daemon would refuse, every problem naming its key."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reporthubd import domain
from reporthubd.notify import report_rules
from reporthubd.notify_rules import RuleError
from reporthubd.store import incidents
from reporthubd.store.database import Store


async def problems(store: Store) -> list[domain.RowError]:
    found: list[domain.RowError] = []
    for config_id, name, notify in await incidents.notify_objects(store):
        try:
            report_rules.parse_notify(
                notify if isinstance(notify, Mapping) else _not_object(notify), key="notify"
            )
        except RuleError as exc:
            found.append(
                domain.RowError(
                    table="report_configs", row_id=config_id, problems=(f"{name!r}: {exc}",)
                )
            )
    for row in await incidents.deadlines(store):
        try:
            report_rules.parse_deadline(row.deadline, key="deadline")
        except RuleError as exc:
            found.append(
                domain.RowError(
                    table="report_schedules", row_id=row.schedule_id, problems=(str(exc),)
                )
            )
    return found


def _not_object(value: Any) -> Mapping[str, Any]:
    raise RuleError(f"notify: must be an object with owners and rules, got {type(value).__name__}")
