"""Reading report definitions (datasources, configs, schedules, deliveries, recipients).

`load_definitions` returns every valid record and a RowError for every row that is malformed or
refers to something missing, inactive or itself invalid. A bad row never hides a good one.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, TypeVar

import sqlalchemy as sa

from reporthubd import calendars, domain
from reporthubd.store import rows, schema
from reporthubd.store.database import Store

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class Definitions:
    datasources: dict[int, domain.Datasource] = field(default_factory=dict)
    configs: dict[int, domain.ReportConfig] = field(default_factory=dict)
    schedules: dict[int, domain.Schedule] = field(default_factory=dict)
    deliveries: dict[int, domain.Delivery] = field(default_factory=dict)
    calendars_by_name: dict[str, calendars.Calendar] = field(default_factory=dict)
    errors: tuple[domain.RowError, ...] = ()
    warnings: tuple[domain.RowError, ...] = ()

    def deliveries_for(self, config_id: int) -> list[domain.Delivery]:
        return [d for d in self.deliveries.values() if d.config_id == config_id]


@dataclass(frozen=True, kw_only=True)
class Fingerprint:
    """A cheap summary of the definition tables: a change in any of them changes this."""

    parts: tuple[tuple[str, int, int, int, datetime | None], ...]
    """(table, rows, active rows, highest id, newest updated_at) per definition table: a
    deactivation or a delete-and-insert that leaves `updated_at` alone still changes it."""


async def _select_all(store: Store, table: sa.Table, active_only: bool) -> list[dict[str, Any]]:
    query = sa.select(table).order_by(table.c.id)
    if active_only:
        query = query.where(table.c.is_active == sa.true())
    async with store.engine.connect() as conn:
        result = await conn.execute(query)
        return [dict(row) for row in result.mappings()]


# report_schedules columns that no domain.Schedule field is made of (rows.schedule): not read.
_SCHEDULE_UNUSED = frozenset({"created_at", "name", "deadline"})
# Schedule rows converted per batch of a server-side cursor: a million schedules are read
# without a million row dicts (or the driver's buffered rows) held at once.
_SCHEDULE_BATCH = 5000


async def _read_schedules(
    store: Store, active_only: bool, default_timezone: str
) -> list[domain.Schedule | domain.RowError]:
    """Every schedule row, validated, read in batches (bench/README.md, a million schedules:
    the load's floor is the driver decoding the rows; each column not read is CPU saved)."""
    table = schema.schedules
    query = sa.select(*(c for c in table.c if c.name not in _SCHEDULE_UNUSED)).order_by(table.c.id)
    if active_only:
        query = query.where(table.c.is_active == sa.true())
    convert: Callable[..., domain.Schedule | domain.RowError] = rows.schedule
    out: list[domain.Schedule | domain.RowError] = []
    async with store.engine.connect() as conn:
        result = await conn.stream(query)
        names = list(result.keys())
        async for batch in result.partitions(_SCHEDULE_BATCH):
            # a plain dict per row (zip in C): RowMapping.get is Python-level, 20-odd per row
            out += [
                convert(dict(zip(names, row, strict=True)), default_timezone=default_timezone)
                for row in batch
            ]
    return out


def _valid(records: list[T | domain.RowError], errors: list[domain.RowError]) -> list[T]:
    """Keep the records, move the row errors to `errors`."""
    valid: list[T] = []
    for record in records:
        if isinstance(record, domain.RowError):
            errors.append(record)
        else:
            valid.append(record)
    return valid


def _refused(table: str, row_id: object, message: str) -> domain.RowError:
    return domain.RowError(table=table, row_id=row_id, problems=(message,))


def _warned(table: str, row_id: object, problems: list[str]) -> list[domain.RowError]:
    return (
        [domain.RowError(table=table, row_id=row_id, problems=tuple(problems))] if problems else []
    )


async def load_definitions(
    store: Store, *, default_timezone: str, active_only: bool = True
) -> Definitions:
    errors: list[domain.RowError] = []
    warnings: list[domain.RowError] = []

    async def read(table: sa.Table) -> list[dict[str, Any]]:
        return await _select_all(store, table, active_only)

    datasources = {
        ds.id: ds
        for ds in _valid([rows.datasource(r) for r in await read(schema.datasources)], errors)
    }
    for ds in datasources.values():
        warnings += _warned("report_datasources", ds.id, rows.unknown_key_warnings(ds))
    invalid_datasources = {e.row_id for e in errors if e.table == "report_datasources"}

    configs: dict[int, domain.ReportConfig] = {}
    for config in _valid([rows.report_config(r) for r in await read(schema.configs)], errors):
        if config.datasource_id in datasources:
            configs[config.id] = config
        else:
            why = (
                "is invalid"
                if config.datasource_id in invalid_datasources
                else "is missing or inactive"
            )
            errors.append(
                _refused(
                    "report_configs",
                    config.id,
                    f"datasource_id: datasource {config.datasource_id} {why}",
                )
            )

    def config_missing(table: str, row_id: int, config_id: int) -> domain.RowError:
        return _refused(
            table, row_id, f"config_id: report config {config_id} is missing, inactive or invalid"
        )

    calendar_rows = [rows.calendar(r) for r in await read(schema.calendars)]
    calendars_by_name = {c.name: c for c in _valid(calendar_rows, errors)}

    schedules: dict[int, domain.Schedule] = {}
    schedule_rows = await _read_schedules(store, active_only, default_timezone)
    for sched in _valid(schedule_rows, errors):
        if sched.config_id not in configs:
            errors.append(config_missing("report_schedules", sched.id, sched.config_id))
            continue
        resolved = with_calendar(sched, calendars_by_name)
        if isinstance(resolved, domain.RowError):
            errors.append(resolved)
        else:
            schedules[sched.id] = resolved

    recipients: dict[int, list[domain.Recipient]] = {}
    for person in _valid([rows.recipient(r) for r in await read(schema.recipients)], errors):
        recipients.setdefault(person.delivery_id, []).append(person)

    deliveries: dict[int, domain.Delivery] = {}
    for delivery in _valid([rows.delivery(r) for r in await read(schema.deliveries)], errors):
        if delivery.config_id not in configs:
            errors.append(config_missing("report_deliveries", delivery.id, delivery.config_id))
            continue
        warnings += _warned("report_deliveries", delivery.id, rows.unknown_key_warnings(delivery))
        deliveries[delivery.id] = replace(
            delivery, recipients=tuple(recipients.get(delivery.id, ()))
        )

    return Definitions(
        datasources=datasources,
        configs=configs,
        schedules=schedules,
        deliveries=deliveries,
        calendars_by_name=calendars_by_name,
        errors=tuple(errors),
        warnings=tuple(warnings),
    )


def with_calendar(
    schedule: domain.Schedule, known: dict[str, calendars.Calendar]
) -> domain.Schedule | domain.RowError:
    """`schedule` with its calendar resolved, or a RowError naming `calendar_name`."""
    if schedule.calendar_name is None:
        return schedule
    found = known.get(schedule.calendar_name)
    if found is None:
        return _refused(
            "report_schedules",
            schedule.id,
            f"calendar_name: unknown calendar {schedule.calendar_name!r} "
            "(missing, inactive or invalid in report_calendars)",
        )
    return replace(schedule, calendar=found)


async def load_calendars(store: Store) -> dict[str, calendars.Calendar]:
    """The active, valid calendars by name."""
    found = [rows.calendar(r) for r in await _select_all(store, schema.calendars, True)]
    return {c.name: c for c in found if isinstance(c, calendars.Calendar)}


async def fingerprint(store: Store) -> Fingerprint:
    """Row counts, active rows, highest id and newest updated_at of each definition table, in
    one round trip."""
    async with store.engine.connect() as conn:
        found = {row.name: row for row in (await conn.execute(_fingerprint_query())).all()}
    parts = []
    for table in schema.WATCHED_TABLES:
        row = found[table.name]
        latest = row.latest
        if isinstance(latest, str):
            latest = datetime.fromisoformat(latest)
        parts.append(
            (table.name, int(row.count), int(row.active or 0), int(row.highest or 0), latest)
        )
    return Fingerprint(parts=tuple(parts))


@functools.cache
def _fingerprint_query() -> sa.CompoundSelect[Any]:
    """One SELECT per definition table, as one UNION ALL, built once (the watcher runs it every
    reload interval)."""
    selects = []
    for table in schema.WATCHED_TABLES:
        newest = sa.func.max(table.c.updated_at) if "updated_at" in table.c else sa.null()
        active = sa.func.sum(sa.case((table.c.is_active == sa.true(), 1), else_=0))
        selects.append(
            sa.select(
                sa.literal(table.name).label("name"),
                sa.func.count().label("count"),
                active.label("active"),
                sa.func.max(table.c.id).label("highest"),
                newest.label("latest"),
            )
        )
    return sa.union_all(*selects)


async def get_datasource(
    store: Store, datasource_id: int
) -> domain.Datasource | domain.RowError | None:
    """One datasource row (active or not), validated; None when there is no such row."""
    table = schema.datasources
    async with store.engine.connect() as conn:
        row = (await conn.execute(sa.select(table).where(table.c.id == datasource_id))).first()
    return rows.datasource(dict(row._mapping)) if row is not None else None
