"""The datasources a report's extra sheets name (formats.workbook): looked up by name at run time
and by `check` (an other service may rename or switch one off meanwhile)."""

from __future__ import annotations

import sqlalchemy as sa

from reporthubd import domain
from reporthubd.store import rows, schema
from reporthubd.store.database import Store


async def datasource_named(store: Store, name: str) -> domain.Datasource | str:
    """The active datasource called `name`, or why there is none (a readable sentence)."""
    async with store.engine.connect() as conn:
        found = (
            (
                await conn.execute(
                    sa.select(schema.datasources).where(schema.datasources.c.name == name)
                )
            )
            .mappings()
            .first()
        )
    if found is None:
        return f"no datasource is named {name!r}"
    if not found.get("is_active"):
        return f"the datasource {name!r} is inactive"
    parsed = rows.datasource(dict(found))
    if isinstance(parsed, domain.RowError):
        return str(parsed)
    return parsed
