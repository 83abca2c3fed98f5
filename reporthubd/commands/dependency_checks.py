"""What `reporthubd check` says about schedules' dependencies (reporthubd/waits.py): a report
in `depends_on` that does not exist (or is inactive), and a dependency cycle between schedules'
reports (each would wait for the other until its deadline, every period)."""

from __future__ import annotations

from reporthubd import domain, waits
from reporthubd.store.definitions import Definitions


def problems(found: Definitions) -> list[domain.RowError]:
    by_name = {config.name: config for config in found.configs.values()}
    out: list[domain.RowError] = []
    edges: dict[str, set[str]] = {}
    owner: dict[str, int] = {}
    for schedule in found.schedules.values():
        rule = schedule.waits
        config = found.configs.get(schedule.config_id)
        if rule is None or config is None:
            continue
        for dep in rule.depends_on:
            target = by_name.get(dep) if isinstance(dep, str) else found.configs.get(dep)
            if target is None:
                out.append(
                    domain.RowError(
                        table="report_schedules",
                        row_id=schedule.id,
                        problems=(f"depends_on: no active report {dep!r}",),
                    )
                )
                continue
            edges.setdefault(config.name, set()).add(target.name)
            owner.setdefault(config.name, schedule.id)
    cycle = waits.find_cycle(edges)
    if cycle is not None:
        out.append(
            domain.RowError(
                table="report_schedules",
                row_id=owner[cycle[0]],
                problems=("depends_on: dependency cycle " + " -> ".join(cycle),),
            )
        )
    return out
