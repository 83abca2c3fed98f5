"""Execution rows: the history reporthubd itself writes, and what a run reads to start.

Status changes are made by reporthubd/lifecycle/executions.py only (through `update_execution`
with the transition's source statuses); this module is their SQL."""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from reporthubd import calendars, domain, logs
from reporthubd.ids import new_id
from reporthubd.store import journal, rows, schema
from reporthubd.store import nodes as node_rows
from reporthubd.store.database import Store, driver_of, mark_clean, mysql_time
from reporthubd.store.types import JSONDocument, MalformedJSON, UTCDateTime
from reporthubd.timeutil import utcnow

log = logs.get(__name__)


class InvalidExecutionRow(ValueError):
    """An execution row whose status or trigger_type is outside the contract's vocabulary (the
    store is shared: another service may have written it)."""


def execution_record(row: Any) -> domain.Execution:
    """The row as a record; raises InvalidExecutionRow for an unknown status or trigger type."""
    parameters = row.parameters if isinstance(row.parameters, dict) else {}
    if isinstance(row.parameters, MalformedJSON):
        parameters = {}
    try:
        trigger_type = domain.TriggerType(row.trigger_type)
        status = domain.ExecutionStatus(row.status)
    except ValueError as exc:
        raise InvalidExecutionRow(f"execution {row.id} has an invalid row: {exc}") from None
    return domain.Execution(
        id=row.id,
        config_id=row.config_id,
        schedule_id=row.schedule_id,
        trigger_type=trigger_type,
        scheduled_for=row.scheduled_for,
        status=status,
        parameters=parameters,
        node_id=row.node_id,
        heartbeat_at=row.heartbeat_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        row_count=row.row_count,
        file_name=row.file_name,
        file_path=row.file_path,
        file_size=row.file_size,
        file_sha256=row.file_sha256,
        error_message=row.error_message,
        created_at=row.created_at,
        recovers_id=getattr(row, "recovers_id", None),
        shifted_to=getattr(row, "shifted_to", None),
        shift_reason=getattr(row, "shift_reason", None),
        alert_value=getattr(row, "alert_value", None),
        alert_decision=getattr(row, "alert_decision", None),
        alert_reason=getattr(row, "alert_reason", None),
        attempt=int(getattr(row, "attempt", None) or 0),
    )


def valid_records(rows: Any) -> list[domain.Execution]:
    """The records of `rows`, leaving out (and logging) rows outside the contract's vocabulary,
    so that one foreign row does not break a listing."""
    out = []
    for row in rows:
        try:
            out.append(execution_record(row))
        except InvalidExecutionRow as exc:
            log.warning("invalid execution row left out", error=str(exc))
    return out


async def insert_execution(
    store: Store,
    *,
    config_id: int,
    trigger_type: domain.TriggerType,
    schedule_id: int | None = None,
    scheduled_for: datetime | None = None,
    status: domain.ExecutionStatus = domain.ExecutionStatus.PENDING,
    parameters: dict[str, Any] | None = None,
    node_id: str | None = None,
    error_message: str | None = None,
    execution_id: str | None = None,
) -> str | None:
    """Insert one execution row. Returns its id, or None when (schedule_id, scheduled_for) is
    already taken: the claim of a fire that another node (or an earlier run) made first."""
    execution_id = execution_id or new_id()
    now = utcnow()
    values = {
        "id": execution_id,
        "config_id": config_id,
        "schedule_id": schedule_id,
        "trigger_type": trigger_type.value,
        "scheduled_for": scheduled_for,
        "status": status.value,
        "parameters": parameters,
        "node_id": node_id,
        "error_message": error_message,
        "created_at": now,
    }
    if status.is_terminal:
        values["finished_at"] = now
    try:
        async with store.engine.begin() as conn:
            await conn.execute(sa.insert(schema.executions).values(**values))
    except sa.exc.IntegrityError:
        if schedule_id is None:
            raise
        return None
    return execution_id


async def get_execution(store: Store, execution_id: str) -> domain.Execution | None:
    async with store.engine.connect() as conn:
        row = (
            await conn.execute(
                sa.select(schema.executions).where(schema.executions.c.id == execution_id)
            )
        ).first()
    return execution_record(row) if row is not None else None


async def update_execution(
    store: Store,
    execution_id: str,
    *,
    only_if_status: tuple[domain.ExecutionStatus, ...] = (),
    only_if_node: str | None = None,
    durable: bool = False,
    **values: Any,
) -> bool:
    """Set columns of one execution; with `only_if_status`, only while it has one of those
    statuses (a conditional update, so two nodes never both move the same row). Returns whether
    the row was updated.

    `durable`: a record of what happened (a run's outcome, its file) that must outlive a store
    outage: when the store is unreachable it waits in the store journal, flushed in order when the
    store answers again, and this returns True (store/journal.py)."""
    for key, value in list(values.items()):
        if isinstance(value, enum.Enum):
            values[key] = value.value
    statuses = [s.value for s in only_if_status]
    fence = {"only_if_node": only_if_node} if only_if_node is not None else {}
    if durable:
        written = await journal.durable(
            store,
            "update_execution",
            execution_id=execution_id,
            only_if_status=statuses,
            values=values,
            **fence,
        )
        return True if written is None else bool(written)
    return bool(
        await _update_execution(
            store, execution_id=execution_id, only_if_status=statuses, values=values, **fence
        )
    )


@journal.operation("update_execution")
async def _update_execution(
    store: Store,
    *,
    execution_id: str,
    only_if_status: list[str],
    values: dict[str, Any],
    only_if_node: str | None = None,
) -> bool:
    if store.dialect == "mysql":
        return await _update_mysql(store, execution_id, only_if_status, values, only_if_node)
    query = sa.update(schema.executions).where(schema.executions.c.id == execution_id)
    if only_if_status:
        query = query.where(schema.executions.c.status.in_(only_if_status))
    if only_if_node is not None:  # fencing: only while the run is still this node's
        query = query.where(schema.executions.c.node_id == only_if_node)
    async with store.engine.begin() as conn:
        result = await conn.execute(query.values(**values))
    return bool(result.rowcount)


async def beat_owned_run(store: Store, node_id: str, execution_id: str, *, now: datetime) -> bool:
    """The fencing check before a side effect (lifecycle/fencing.py): refresh the run's
    heartbeat while it is still RUNNING and `node_id`'s; whether it is. The statement of
    store/nodes.beat_run; on MySQL/MariaDB sent as UPDATE and COMMIT in one round trip
    (`_update_mysql`) instead of six (SET AUTOCOMMIT on and off, the isolation level put back,
    COMMIT and ROLLBACK around the UPDATE: 1.45 ms of CPU per check, bench/README.md)."""
    if store.dialect != "mysql":
        return await node_rows.beat_run(store, node_id, execution_id, now=now)
    running = [domain.ExecutionStatus.RUNNING.value]
    return await _update_mysql(store, execution_id, running, {"heartbeat_at": now}, node_id)


async def _update_mysql(
    store: Store,
    execution_id: str,
    only_if_status: list[str],
    values: dict[str, Any],
    only_if_node: str | None,
) -> bool:
    """The UPDATE and its COMMIT in one round trip, on the driver connection (MySQL/MariaDB).

    Through SQLAlchemy the same write took three round trips (UPDATE, COMMIT, the pool's
    ROLLBACK when the connection went back) and 1.6 ms of CPU; this takes one and 0.56 ms
    (bench/README.md, split by key: every run writes its start and its end, most their file).
    The server runs the COMMIT right after the UPDATE, so no transaction stays open across
    the network whatever the client does meanwhile (a frozen node holds no lock). Errors are
    SQLAlchemy's, as from any other store call."""
    import pymysql  # type: ignore[import-untyped]  # the driver of this store's dialect

    async with store.engine.connect() as conn:
        driver = await driver_of(conn)
        sql, parameters = _mysql_update_sql(execution_id, only_if_status, values, only_if_node)
        try:
            cursor = await driver.cursor()
            async with cursor:
                await cursor.execute(sql, parameters)
                rowcount = int(cursor.rowcount)
                await cursor.nextset()  # the COMMIT's answer
        except BaseException as exc:
            # sent around SQLAlchemy: the connection's state is unknown, drop it
            await conn.invalidate()
            if isinstance(exc, pymysql.err.Error):
                raise sa.exc.DBAPIError.instance(sql, None, exc, pymysql.err.Error) from exc
            raise
        await mark_clean(conn)
    return rowcount > 0


def _mysql_update_sql(
    execution_id: str,
    only_if_status: list[str],
    values: dict[str, Any],
    only_if_node: str | None,
) -> tuple[str, list[Any]]:
    """`UPDATE ... ; COMMIT` with %s placeholders and their parameters, which the driver's
    `execute` binds (the values as SQLAlchemy binds them for these columns' types: UTC
    DATETIME, JSON)."""
    table = schema.executions
    assignments, parameters = [], []
    for column in table.c:  # in the table's order, as SQLAlchemy writes a SET clause
        if column.name in values:
            assignments.append(f"`{column.name}` = %s")
            parameters.append(_mysql_value(column, values[column.name]))
    unknown = set(values) - set(table.c.keys())
    if unknown:
        raise KeyError(f"not columns of {table.name}: {sorted(unknown)}")
    if not assignments:
        raise ValueError("update_execution needs at least one column to set")
    conditions = ["`id` = %s"]
    parameters.append(execution_id)
    if only_if_status:
        conditions.append(f"`status` IN ({', '.join('%s' for _ in only_if_status)})")
        parameters += only_if_status
    if only_if_node is not None:
        conditions.append("`node_id` = %s")
        parameters.append(only_if_node)
    sql = (
        f"UPDATE `{table.name}` SET {', '.join(assignments)} "
        f"WHERE {' AND '.join(conditions)}; COMMIT"
    )
    return sql, parameters


def _mysql_value(column: sa.Column[Any], value: Any) -> Any:
    kind = column.type
    if isinstance(kind, UTCDateTime):
        return None if value is None else mysql_time(_aware(value))
    if isinstance(kind, JSONDocument):
        # As SQLAlchemy's JSON binds it: None is the JSON null, not SQL NULL.
        return json.dumps(value)
    return value


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r} given to a UTC column")
    return value


# -- what the engine reads and writes --------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class RunDefinitions:
    """The definitions one execution needs, read fresh when it starts."""

    config: domain.ReportConfig
    datasource: domain.Datasource
    schedule: domain.Schedule | None
    deliveries: tuple[domain.Delivery, ...]
    problems: tuple[str, ...] = ()
    """Invalid delivery rows that were left out (reported, not fatal)."""
    split: SplitPart | None = None
    """A split report's child: its rows are its key's part of the one query (engine/splitting)."""


@dataclass(frozen=True, kw_only=True)
class SplitPart:
    column: str
    key: str
    burst_id: str


class DefinitionProblem(Exception):
    """The config or datasource of an execution is missing, inactive or invalid."""


async def _one(conn: Any, table: sa.Table, row_id: int) -> dict[str, Any] | None:
    row = (await conn.execute(sa.select(table).where(table.c.id == row_id))).mappings().first()
    return dict(row) if row is not None else None


async def get_config(store: Store, config_id: int) -> domain.ReportConfig | None:
    """The config row as a record (None when missing); raises DefinitionProblem when invalid."""
    async with store.engine.connect() as conn:
        row = await _one(conn, schema.configs, config_id)
    if row is None:
        return None
    record = rows.report_config(row)
    if isinstance(record, domain.RowError):
        raise DefinitionProblem(f"report config {config_id} is invalid: {record}")
    return record


async def _with_calendar(conn: Any, schedule: domain.Schedule) -> domain.Schedule:
    """The schedule with its business calendar (templates' business-day helpers use it)."""
    if schedule.calendar_name is None:
        return schedule
    table = schema.calendars
    row = (
        (
            await conn.execute(
                sa.select(table).where(
                    table.c.name == schedule.calendar_name, table.c.is_active == sa.true()
                )
            )
        )
        .mappings()
        .first()
    )
    found = rows.calendar(dict(row)) if row is not None else None
    if not isinstance(found, calendars.Calendar):
        raise DefinitionProblem(
            f"schedule {schedule.id}: calendar_name: calendar {schedule.calendar_name!r} "
            + ("is invalid: " + "; ".join(found.problems) if found else "is missing or inactive")
        )
    return replace(schedule, calendar=found)


async def load_run_definitions(
    store: Store, config_id: int, schedule_id: int | None, *, default_timezone: str
) -> RunDefinitions:
    async with store.engine.connect() as conn:
        config_row = await _one(conn, schema.configs, config_id)
        if config_row is None:
            raise DefinitionProblem(f"report config {config_id} does not exist")
        if not config_row.get("is_active"):
            raise DefinitionProblem(f"report config {config_id} is inactive")
        config = rows.report_config(config_row)
        if isinstance(config, domain.RowError):
            raise DefinitionProblem(str(config))
        source_row = await _one(conn, schema.datasources, config.datasource_id)
        if source_row is None:
            raise DefinitionProblem(f"datasource {config.datasource_id} does not exist")
        if not source_row.get("is_active"):
            raise DefinitionProblem(f"datasource {config.datasource_id} is inactive")
        datasource = rows.datasource(source_row)
        if isinstance(datasource, domain.RowError):
            raise DefinitionProblem(str(datasource))
        schedule: domain.Schedule | None = None
        if schedule_id is not None:
            schedule_row = await _one(conn, schema.schedules, schedule_id)
            if schedule_row is not None:
                parsed = rows.schedule(schedule_row, default_timezone=default_timezone)
                if isinstance(parsed, domain.RowError):
                    raise DefinitionProblem(str(parsed))
                schedule = await _with_calendar(conn, parsed)
        delivery_rows = (
            (
                await conn.execute(
                    sa.select(schema.deliveries)
                    .where(
                        schema.deliveries.c.config_id == config_id,
                        schema.deliveries.c.is_active == sa.true(),
                    )
                    .order_by(schema.deliveries.c.id)
                )
            )
            .mappings()
            .all()
        )
        ids = [r["id"] for r in delivery_rows]
        recipient_rows: Sequence[Any] = ()
        if ids:
            recipient_rows = (
                (
                    await conn.execute(
                        sa.select(schema.recipients)
                        .where(
                            schema.recipients.c.delivery_id.in_(ids),
                            schema.recipients.c.is_active == sa.true(),
                        )
                        .order_by(schema.recipients.c.id)
                    )
                )
                .mappings()
                .all()
            )
    problems: list[str] = []
    people: dict[int, list[domain.Recipient]] = {}
    for raw in recipient_rows:
        person = rows.recipient(dict(raw))
        if isinstance(person, domain.RowError):
            problems.append(str(person))
        else:
            people.setdefault(person.delivery_id, []).append(person)
    deliveries = []
    for raw in delivery_rows:
        delivery = rows.delivery(dict(raw))
        if isinstance(delivery, domain.RowError):
            problems.append(str(delivery))
        else:
            deliveries.append(replace(delivery, recipients=tuple(people.get(delivery.id, ()))))
    return RunDefinitions(
        config=config,
        datasource=datasource,
        schedule=schedule,
        deliveries=tuple(deliveries),
        problems=tuple(problems),
    )


async def statuses(store: Store, execution_ids: list[str]) -> dict[str, domain.ExecutionStatus]:
    """Status of each of the given executions that exists."""
    found: dict[str, domain.ExecutionStatus] = {}
    table = schema.executions
    for start in range(0, len(execution_ids), 500):
        chunk = execution_ids[start : start + 500]
        async with store.engine.connect() as conn:
            result = await conn.execute(
                sa.select(table.c.id, table.c.status).where(table.c.id.in_(chunk))
            )
            found.update({row.id: domain.ExecutionStatus(row.status) for row in result})
    return found


async def list_executions(
    store: Store,
    *,
    config_id: int | None = None,
    statuses_in: tuple[domain.ExecutionStatus, ...] = (),
    node_id: str | None = None,
    limit: int = 100,
) -> list[domain.Execution]:
    """Newest first."""
    table = schema.executions
    query = sa.select(table).order_by(table.c.created_at.desc(), table.c.id).limit(limit)
    if config_id is not None:
        query = query.where(table.c.config_id == config_id)
    if statuses_in:
        query = query.where(table.c.status.in_([s.value for s in statuses_in]))
    if node_id is not None:
        query = query.where(table.c.node_id == node_id)
    async with store.engine.connect() as conn:
        result = await conn.execute(query)
        return valid_records(result)


async def prune_executions(store: Store, *, before: datetime, batch_size: int = 500) -> int:
    """Delete finished executions created before `before` (and their delivery logs), in
    batches of `batch_size` rows per transaction so no lock is held long. Returns the count."""
    table = schema.executions
    logs = schema.delivery_logs
    terminal = [s.value for s in domain.ExecutionStatus if s.is_terminal]
    total = 0
    while True:
        async with store.engine.begin() as conn:
            ids = list(
                (
                    await conn.execute(
                        sa.select(table.c.id)
                        .where(table.c.created_at < before, table.c.status.in_(terminal))
                        .order_by(table.c.created_at)
                        .limit(batch_size)
                    )
                ).scalars()
            )
            if not ids:
                return total
            await conn.execute(sa.delete(logs).where(logs.c.execution_id.in_(ids)))
            await conn.execute(sa.delete(table).where(table.c.id.in_(ids)))
        total += len(ids)
        if len(ids) < batch_size:
            return total
