"""The scheduler's reads and writes of report_schedules (it writes only last_run_at and
next_run_at; other services own the rest of the row)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime

import sqlalchemy as sa

from reporthubd import domain
from reporthubd.store import rows, schema
from reporthubd.store.database import Store

_s = schema.schedules
# ids per UPDATE ... WHERE id IN (...): far below every backend's bound-variable limit
CHUNK = 1000


async def record_runs(
    store: Store, runs: Iterable[tuple[int, datetime | None, datetime | None]]
) -> None:
    """Write (schedule_id, last_run_at, next_run_at) after claims. Schedules that fired
    together share both values, so they are grouped into one UPDATE per distinct pair.
    `last_run_at` never moves backwards (several nodes write it); None leaves it as it is and
    writes only next_run_at (every fire claimed for the schedule was SKIPPED)."""
    groups: dict[tuple[datetime | None, datetime | None], list[int]] = defaultdict(list)
    for schedule_id, last, following in runs:
        groups[(last, following)].append(schedule_id)
    if not groups:
        return
    async with store.engine.begin() as conn:
        for (last, following), ids in groups.items():
            for start in range(0, len(ids), CHUNK):
                chunk = _s.c.id.in_(ids[start : start + CHUNK])
                if last is None:
                    await conn.execute(sa.update(_s).where(chunk).values(next_run_at=following))
                    continue
                await conn.execute(
                    sa.update(_s)
                    .where(chunk, sa.or_(_s.c.last_run_at.is_(None), _s.c.last_run_at <= last))
                    .values(last_run_at=last, next_run_at=following)
                )


async def get_schedule(
    store: Store, schedule_id: int, *, default_timezone: str
) -> domain.Schedule | domain.RowError | None:
    """One schedule row, validated (a RowError says why it is invalid), or None if missing.
    Active or not: `reporthubd next` may look at any schedule."""
    async with store.engine.connect() as conn:
        row = (await conn.execute(sa.select(_s).where(_s.c.id == schedule_id))).mappings().first()
    if row is None:
        return None
    return rows.schedule(dict(row), default_timezone=default_timezone)
