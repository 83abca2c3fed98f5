"""The scheduler's reads and writes of report_schedules (it writes only last_run_at and
next_run_at; other services own the rest of the row)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from reporthubd import domain
from reporthubd.store import definitions, rows, schema
from reporthubd.store.database import Store, driver_of, mark_clean, mysql_time

_s = schema.schedules
# ids per UPDATE ... WHERE id IN (...): far below every backend's bound-variable limit
CHUNK = 1000


Run = tuple[int, datetime | None, datetime | None]
"""(schedule_id, last_run_at, next_run_at) to write after a claim."""
Update = tuple[datetime | None, datetime | None, list[int]]
"""One UPDATE: (last_run_at, next_run_at, schedule ids) for schedules that share both."""


def updates(runs: Iterable[Run]) -> list[Update]:
    """Schedules that fired together share both values: one UPDATE per distinct pair (and
    per CHUNK ids). In id order, within an UPDATE and from one to the next (by each one's
    first id), so that two nodes writing the same schedules lock their rows in the same
    order (a claim's UPDATEs run first in its transaction: claims._send_mysql)."""
    groups: dict[tuple[datetime | None, datetime | None], list[int]] = defaultdict(list)
    for schedule_id, last, following in runs:
        groups[(last, following)].append(schedule_id)
    out = [
        (last, following, ids[start : start + CHUNK])
        for (last, following), unsorted in groups.items()
        for ids in [sorted(unsorted)]
        for start in range(0, len(ids), CHUNK)
    ]
    if len(out) > 1:
        out.sort(key=lambda update: update[2][0])
    return out


async def record_runs(store: Store, runs: Iterable[Run]) -> None:
    """Write (schedule_id, last_run_at, next_run_at) after claims, grouped (see `updates`; on
    MySQL/MariaDB all of them and the COMMIT go in one round trip). `last_run_at` never moves
    backwards (several nodes write it); None leaves it as it is and writes only next_run_at
    (every fire claimed for the schedule was SKIPPED)."""
    todo = updates(runs)
    if not todo:
        return
    async with store.engine.connect() as conn:
        if store.dialect == "mysql":
            await _record_mysql(conn, todo)
            return
        for last, following, ids in todo:
            chunk = _s.c.id.in_(ids)
            if last is None:
                await conn.execute(sa.update(_s).where(chunk).values(next_run_at=following))
                continue
            await conn.execute(
                sa.update(_s)
                .where(chunk, sa.or_(_s.c.last_run_at.is_(None), _s.c.last_run_at <= last))
                .values(last_run_at=last, next_run_at=following)
            )
        await conn.commit()


def mysql_statements(cursor: Any, todo: list[Update]) -> list[bytes]:
    """The UPDATE statements of `todo` for MySQL/MariaDB, every value bound by the driver
    (`mogrify`), to be sent with others in one round trip."""
    encoding = cursor.connection.encoding
    statements = []
    for last, following, ids in todo:
        at = mysql_time(following) if following is not None else None
        where = "id IN (" + ", ".join(["%s"] * len(ids)) + ")"
        if last is None:
            sql = f"UPDATE {_s.name} SET next_run_at = %s WHERE {where}"
            statements.append(cursor.mogrify(sql, (at, *ids)))
            continue
        was = mysql_time(last)
        sql = (
            f"UPDATE {_s.name} SET last_run_at = %s, next_run_at = %s WHERE {where} "
            "AND (last_run_at IS NULL OR last_run_at <= %s)"
        )
        statements.append(cursor.mogrify(sql, (was, at, *ids, was)))
    return [text.encode(encoding, "surrogateescape") for text in statements]


async def _record_mysql(conn: AsyncConnection, todo: list[Update]) -> None:
    driver = await driver_of(conn)
    try:
        async with driver.cursor() as cursor:
            await cursor.execute(b"; ".join([*mysql_statements(cursor, todo), b"COMMIT"]))
            while await cursor.nextset():
                pass
    except BaseException:
        await conn.invalidate()  # sent around SQLAlchemy: the connection's state is unknown
        raise
    await mark_clean(conn)


async def get_schedule(
    store: Store, schedule_id: int, *, default_timezone: str
) -> domain.Schedule | domain.RowError | None:
    """One schedule row, validated (a RowError says why it is invalid), or None if missing.
    Active or not: `reporthubd next` may look at any schedule."""
    async with store.engine.connect() as conn:
        row = (await conn.execute(sa.select(_s).where(_s.c.id == schedule_id))).mappings().first()
    if row is None:
        return None
    found = rows.schedule(dict(row), default_timezone=default_timezone)
    if isinstance(found, domain.Schedule) and found.calendar_name is not None:
        return definitions.with_calendar(found, await definitions.load_calendars(store))
    return found
