"""Dependencies and readiness: the rules by which a schedule's run waits. Pure: no store, no clock.

A schedule may name reports it depends on (`depends_on`: report names or config ids) and a
readiness probe (`readiness_query`, run on the schedule's own report datasource). Its claimed run
then waits, before it takes a pool slot, until:

- every report in `depends_on` has a COMPLETED execution **for the same logical period**: one
  whose `scheduled_for` (for a run without one, a manual run: its `started_at`) falls on the same
  local day, in the *waiting* schedule's zone, as the waiting fire's `scheduled_for`; and
- the probe's first column of its first row is true (a non-zero number, true, a non-empty text
  other than "0"/"false"; no row or NULL is false). It is run with `:window_start` and
  `:window_end` (that local day, as UTC instants: midnight to midnight) and `:scheduled_for`
  bound, e.g. `SELECT max(loaded_at) >= :window_end FROM etl_log`.

The checks are repeated with backoff (1 s, 2 s, 4 s, ... up to `scheduler.wait_check_max_seconds`)
until `wait_deadline`: `+90s`, `+20m`, `+2h` after the fire, or `HH:MM` on the fire's local day
(default `+1h`). Past it, `wait_policy` decides: `skip` (the run is recorded SKIPPED with what it
waited for) or `run_anyway`.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

DEFAULT_DEADLINE = "+1h"
FIRST_CHECK_SECONDS = 1.0
_RELATIVE = re.compile(r"^\+(\d{1,6})([smh])$")
_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


class WaitPolicy(enum.StrEnum):
    SKIP = "skip"
    RUN_ANYWAY = "run_anyway"


@dataclass(frozen=True, kw_only=True)
class WaitRule:
    depends_on: tuple[str | int, ...] = ()
    """Report names (report_configs.name) or config ids."""
    readiness_query: str | None = None
    deadline: str = DEFAULT_DEADLINE
    policy: WaitPolicy = WaitPolicy.SKIP


def parse(row: Mapping[str, Any]) -> WaitRule | None:
    """The wait rule of a schedule row (None: it waits for nothing). Raises ValueError naming
    the key: depends_on, readiness_query, wait_deadline, wait_policy."""
    raw = row.get("depends_on")
    depends: list[str | int] = []
    if raw is not None:
        if not isinstance(raw, list):
            raise ValueError(f"depends_on: a list of report names or ids, got {raw!r}")
        for item in raw:
            if isinstance(item, bool) or not isinstance(item, (str, int)) or item == "":
                raise ValueError(f"depends_on: {item!r} is not a report name or id")
            depends.append(item)
    query = row.get("readiness_query") or None
    if query is not None and (not isinstance(query, str) or not query.strip()):
        raise ValueError("readiness_query: must be SQL text")
    deadline = row.get("wait_deadline") or None
    policy_text = row.get("wait_policy") or None
    if not depends and query is None:
        if deadline is not None or policy_text is not None:
            key = "wait_deadline" if deadline is not None else "wait_policy"
            raise ValueError(f"{key}: set without depends_on or readiness_query")
        return None
    if deadline is not None:
        check_deadline(deadline)
    try:
        policy = WaitPolicy(policy_text or WaitPolicy.SKIP)
    except ValueError:
        raise ValueError(f"wait_policy: must be skip or run_anyway, got {policy_text!r}") from None
    return WaitRule(
        depends_on=tuple(depends),
        readiness_query=query,
        deadline=deadline or DEFAULT_DEADLINE,
        policy=policy,
    )


def check_deadline(text: object, key: str = "wait_deadline") -> str:
    if not isinstance(text, str) or not (_RELATIVE.match(text) or _CLOCK.match(text)):
        raise ValueError(
            f"{key}: {text!r} is neither +N s/m/h after the fire (e.g. +2h) nor HH:MM on its "
            "local day (e.g. 07:30)"
        )
    return text


def period(scheduled_for: datetime, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The fire's local day in `zone`, as UTC instants [midnight, next midnight)."""
    day = scheduled_for.astimezone(zone).date()
    start = datetime.combine(day, time(0), tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
    return start.astimezone(UTC), end.astimezone(UTC)


def deadline_at(rule: WaitRule, scheduled_for: datetime, zone: ZoneInfo) -> datetime:
    relative = _RELATIVE.match(rule.deadline)
    if relative:
        amount, unit = int(relative.group(1)), relative.group(2)
        seconds = amount * {"s": 1, "m": 60, "h": 3600}[unit]
        return scheduled_for.astimezone(UTC) + timedelta(seconds=seconds)
    clock = _CLOCK.match(rule.deadline)
    assert clock is not None
    day = scheduled_for.astimezone(zone).date()
    local = datetime.combine(day, time(int(clock.group(1)), int(clock.group(2))), tzinfo=zone)
    return local.astimezone(UTC)


def next_check(checks: int, now: datetime, deadline: datetime, max_seconds: float) -> datetime:
    """When to check again after `checks` checks: 1 s, 2 s, 4 s ... at most `max_seconds`,
    and never after the deadline (checked once more then)."""
    pause = min(max_seconds, FIRST_CHECK_SECONDS * 2 ** min(checks, 30))
    return min(now + timedelta(seconds=pause), max(deadline, now))


def is_true(value: object) -> bool:
    """The probe's answer: see the module docstring."""
    if value is None:
        return False
    if isinstance(value, str):
        return value.strip().lower() not in ("", "0", "false", "f", "no")
    return bool(value)


def describe(rule: WaitRule, names: Mapping[str | int, str], day: str, zone: str) -> str:
    parts = [
        f"report {names.get(dep, str(dep))!r} COMPLETED for {day} ({zone})"
        for dep in rule.depends_on
    ]
    if rule.readiness_query is not None:
        parts.append("the readiness probe to return true")
    return "; ".join(parts)


def find_cycle(edges: Mapping[str, Iterable[str]]) -> list[str] | None:
    """A dependency cycle among reports (`edges`: a report -> the reports it waits for), as the
    path round it (`["b", "a", "b"]`), or None. Runs waiting on each other would all wait until
    their deadlines, every period."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (found := visit(start)) is not None:
            return found
    return None
