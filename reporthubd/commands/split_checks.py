"""What `reporthubd check` says about split-by-key reports (engine/splitting.py): a report whose
`format_options.split_by` names a column but has no active audience driver, or a driver without
a `key_column` (each key's file goes to the audience of the same key; a hash names no key). The
option's own shape is checked with the format options; with `--connect`, that the column is a
column of the report's query (commands/column_checks.py)."""

from __future__ import annotations

from reporthubd import domain
from reporthubd.store import audiences as audience_rows
from reporthubd.store.database import Store
from reporthubd.store.definitions import Definitions

OPTION = "split_by"


async def problems(store: Store, found: Definitions) -> list[domain.RowError]:
    split = [c for c in found.configs.values() if c.format_options.get(OPTION) is not None]
    if not split:
        return []
    drivers = {driver.config_id: driver for driver in await audience_rows.active_drivers(store)}
    out: list[domain.RowError] = []
    for config in split:
        driver = drivers.get(config.id)
        if driver is None:
            problem = (
                f"format option {OPTION!r} needs an active audience driver "
                "(report_audience_drivers, [reports.audiences] in the catalog) whose key_column "
                "names each file's audience"
            )
        elif driver.key_column is None:
            problem = (
                f"format option {OPTION!r} needs the report's audience driver (id {driver.id}) "
                "to have a key_column (each file goes to the audience of the same key)"
            )
        else:
            continue
        out.append(
            domain.RowError(
                table="report_configs", row_id=config.id, problems=(f"{config.name!r}: {problem}",)
            )
        )
    return out
