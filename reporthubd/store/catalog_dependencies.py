"""Dependency cycles `reporthubd apply` refuses across the file and the store.

The catalog itself refuses a cycle among the file's reports (catalog_waits.check_cycles). A
cycle may also run through schedules the file does not name: report A in the file waits for
report B, and B's stored schedule waits for A. This module builds the graph the store would
hold once the file is applied: a report in the file waits for what its file schedules name,
plus (without `--prune`) what its stored schedules the file no longer names still wait for
(they stay); a stored report outside the file keeps its stored schedules' dependencies (with
`--prune` it is deleted, and waits for nothing). Every schedule counts, active or not: a
paused one is resumed without an apply. A stored dependency by config id is read as its name.

A cycle through one of the file's dependencies is refused naming that key
(`reports[i].schedules[j].depends_on`); a cycle wholly among stored schedules is not the file's
doing and is left to `reporthubd check`, which names it.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from reporthubd import catalog as cat
from reporthubd.config import Problem
from reporthubd.store import catalog_schedules, schema


def _names(raw: Any, names: Mapping[int, str]) -> set[str]:
    if not isinstance(raw, list):
        return set()
    out = set()
    for dep in raw:
        if isinstance(dep, bool):
            continue
        if isinstance(dep, int):
            out.add(names.get(dep, str(dep)))
        elif isinstance(dep, str):
            out.add(dep)
    return out


def _path(edges: Mapping[str, set[str]], start: str, goal: str) -> list[str] | None:
    """A shortest path start ... goal along `edges` (breadth first, names in sorted order)."""
    before: dict[str, str | None] = {start: None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        if node == goal:
            path = [node]
            while (prev := before[path[-1]]) is not None:
                path.append(prev)
            return path[::-1]
        for nxt in sorted(edges.get(node, ())):
            if nxt not in before:
                before[nxt] = node
                queue.append(nxt)
    return None


def cycle_problems(
    catalog: cat.Catalog,
    stored_schedules: Sequence[Mapping[str, Any]],
    config_names: Mapping[int, str],
    *,
    prune: bool,
) -> list[Problem]:
    """The first dependency cycle through one of the file's dependencies, once applied (pure:
    over the stored rows as read)."""
    file_reports = {report.name for report in catalog.reports}
    config_ids = {name: config_id for config_id, name in config_names.items()}
    edges: dict[str, set[str]] = {}
    from_store: dict[str, set[str]] = {}
    for row in stored_schedules:
        owner = config_names.get(int(row["config_id"]))
        if owner is None or owner in file_reports or prune:
            continue
        deps = _names(row.get("depends_on"), config_names)
        edges.setdefault(owner, set()).update(deps)
        from_store.setdefault(owner, set()).update(deps)
    for report in catalog.reports:
        mine = edges.setdefault(report.name, set())
        for sched in report.schedules:
            mine.update(sched.depends_on)
        if prune or report.name not in config_ids:
            continue
        rows = [s for s in stored_schedules if s["config_id"] == config_ids[report.name]]
        for row in catalog_schedules.match(report.schedules, rows).leftovers:
            deps = _names(row.get("depends_on"), config_names)
            mine.update(deps)
            from_store.setdefault(report.name, set()).update(deps)
    for i, report in enumerate(catalog.reports):
        for j, sched in enumerate(report.schedules):
            for dep in sorted(set(sched.depends_on)):
                back = _path(edges, dep, report.name)
                if back is None:
                    continue
                cycle = [report.name, *back]
                stored = sorted(
                    {a for a, b in itertools.pairwise(cycle) if b in from_store.get(a, ())}
                )
                through = ", ".join(repr(name) for name in stored)
                message = f"dependency cycle {' -> '.join(cycle)}"
                if through:
                    message += f" (through the stored schedules of {through})"
                return [Problem(where=f"reports[{i}].schedules[{j}].depends_on", message=message)]
    return []


async def check(conn: AsyncConnection, catalog: cat.Catalog, *, prune: bool) -> list[Problem]:
    """`cycle_problems` over the store as `conn` reads it."""
    c, s = schema.configs, schema.schedules
    names = {int(row.id): row.name for row in await conn.execute(sa.select(c.c.id, c.c.name))}
    rows = [dict(row) for row in (await conn.execute(sa.select(s).order_by(s.c.id))).mappings()]
    return cycle_problems(catalog, rows, names, prune=prune)
