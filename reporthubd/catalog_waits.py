"""A catalog schedule's wait rule (reporthubd/waits.py): `depends_on` (report names),
`readiness_query`, `wait_deadline`, `wait_policy` in `[[reports.schedules]]`; checked, exported,
and dependency cycles between the file's reports refused naming the key. Kept apart from
catalog.py, which holds the specs themselves."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from reporthubd import waits
from reporthubd.config import Problem


class _Schedule(Protocol):
    @property
    def depends_on(self) -> list[str]: ...
    @property
    def readiness_query(self) -> str | None: ...
    @property
    def wait_deadline(self) -> str | None: ...
    @property
    def wait_policy(self) -> str | None: ...


class _Report(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def schedules(self) -> Iterable[_Schedule]: ...


def columns(sched: _Schedule) -> dict[str, Any]:
    """The schedule's report_schedules columns for its wait rule."""
    return {
        "depends_on": list(sched.depends_on) or None,
        "readiness_query": sched.readiness_query,
        "wait_deadline": sched.wait_deadline,
        "wait_policy": sched.wait_policy,
    }


def check_rule(sched: _Schedule) -> None:
    """Raises ValueError naming the key (depends_on, wait_deadline, wait_policy, ...)."""
    waits.parse(columns(sched))


exported = columns
"""What `export` writes for it (the same keys, None left out by the writer)."""


def check_cycles(reports: Iterable[_Report]) -> None:
    reports = list(reports)
    edges = {
        report.name: {dep for sched in report.schedules for dep in sched.depends_on}
        for report in reports
    }
    cycle = waits.find_cycle(edges)
    if cycle is None:
        return
    where = next(
        f"reports[{i}].schedules[{j}].depends_on"
        for i, report in enumerate(reports)
        if report.name == cycle[0]
        for j, sched in enumerate(report.schedules)
        if cycle[1] in sched.depends_on
    )
    raise ValueError(f"{where}: dependency cycle {' -> '.join(cycle)}")


def from_row(row: Mapping[str, Any], names: Mapping[int, str]) -> dict[str, Any]:
    """A stored schedule's wait rule as catalog keys (a dependency stored by id: its name)."""
    return {
        "depends_on": [
            names.get(dep, str(dep)) if isinstance(dep, int) else dep
            for dep in (row.get("depends_on") or [])
        ],
        "readiness_query": row.get("readiness_query"),
        "wait_deadline": row.get("wait_deadline"),
        "wait_policy": row.get("wait_policy"),
    }


def unknown_reports(reports: Iterable[_Report], known: set[str]) -> list[Problem]:
    """Dependencies on a report in neither the file nor the store."""
    return [
        Problem(
            where=f"reports[{i}].schedules[{j}].depends_on",
            message=f"no report named {dep!r} (in neither the file nor the store)",
        )
        for i, report in enumerate(reports)
        for j, sched in enumerate(report.schedules)
        for dep in sched.depends_on
        if dep not in known
    ]
