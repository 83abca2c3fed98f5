"""Which stored schedule a catalog's schedule is, and what the plan must say about the rest.

A report's schedules in a catalog file are matched to its stored rows in this order:

1. a named schedule (`name = "morning"`) to the stored row of that name: its cron, zone and
   everything else are then updates of that row;
2. a named schedule no stored row carries yet to an unnamed stored row with its cron and zone
   (the first apply after `export` wrote a name for it adopts the row and stores the name);
3. an unnamed schedule to a stored row with its cron and zone, unnamed rows first.

A stored row left unmatched is not in the file any more. With `--prune` it is deleted; without,
it stays as it is, and the plan lists every such row that is active, and calls out a report that
would be left with more active schedules than the file names (it fires on each of them).
Pure functions over the rows as read: no SQL here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reporthubd import catalog as cat

Row = Mapping[str, Any]


@dataclass(frozen=True, kw_only=True)
class Matched:
    pairs: list[tuple[cat.ScheduleSpec, Row | None]]
    """Each schedule of the file, in file order, with its stored row (None: to create)."""
    leftovers: list[Row]
    """Stored rows of the report the file no longer names."""


def match(specs: Sequence[cat.ScheduleSpec], stored: Sequence[Row]) -> Matched:
    taken: set[int] = set()
    found: dict[int, Row] = {}

    def take(index: int, row: Row | None) -> None:
        if row is not None:
            taken.add(int(row["id"]))
            found[index] = row

    by_name = {row["name"]: row for row in stored if row.get("name")}
    for index, spec in enumerate(specs):
        if spec.name is not None:
            take(index, by_name.get(spec.name))

    def same_fire(spec: cat.ScheduleSpec, row: Row) -> bool:
        return bool(row["cron_expression"] == spec.cron and row["timezone"] == spec.timezone)

    def free(row: Row) -> bool:
        return int(row["id"]) not in taken

    for index, spec in enumerate(specs):
        if spec.name is not None and index not in found:
            take(
                index,
                next(
                    (
                        row
                        for row in stored
                        if int(row["id"]) not in taken
                        and not row.get("name")
                        and same_fire(spec, row)
                    ),
                    None,
                ),
            )
    for index, spec in enumerate(specs):
        if spec.name is None:
            candidates = [row for row in stored if free(row) and same_fire(spec, row)]
            candidates.sort(key=lambda row: bool(row.get("name")))  # unnamed rows first
            take(index, candidates[0] if candidates else None)
    return Matched(
        pairs=[(spec, found.get(index)) for index, spec in enumerate(specs)],
        leftovers=[row for row in stored if int(row["id"]) not in taken],
    )


def describe(row: Row) -> str:
    name = f" {row['name']!r}" if row.get("name") else ""
    zone = f" {row['timezone']}" if row.get("timezone") else ""
    return f"schedule id={row['id']}{name} [{row['cron_expression']}]{zone}"


def notes(report: str, specs: Sequence[cat.ScheduleSpec], leftovers: Sequence[Row]) -> list[str]:
    """What the plan says, without --prune, about the rows the file no longer names."""
    active = [row for row in leftovers if row.get("is_active")]
    out = [
        f"{report}: {describe(row)} is not in the file and stays active "
        "(apply --prune deletes it; is_active = false in the file pauses it for good)"
        for row in active
    ]
    in_file = sum(1 for spec in specs if spec.is_active)
    if active and in_file:
        total = in_file + len(active)
        out.append(
            f"{report}: the file names {in_file} active schedule{'s' if in_file != 1 else ''} "
            f"but the report would have {total} active after this apply, and fire on each: "
            'give the schedule a name (name = "...") to change its cron in place, or apply '
            "with --prune"
        )
    return out
