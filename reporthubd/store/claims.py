"""Claiming fires and recovering lost executions: the scheduler's writes to report_executions.

A fire is claimed by inserting its execution row; UNIQUE (schedule_id, scheduled_for, attempt)
decides between nodes. Attempt 0 is the schedule's own claim of a fire (PENDING to run, or
SKIPPED with the reason it was not run); manual re-runs and recoveries of the same fire take
attempt 1, 2, ... so they never take a fire's place (revision 0003).

Claims go in batches, many fires per round trip: `INSERT ... ON CONFLICT DO NOTHING RETURNING id`
on PostgreSQL and SQLite; `INSERT IGNORE` on MySQL/MariaDB, whose affected-row count says
whether every row went in (then all are ours), else a read-back of which of our ids exist.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeAlias, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from reporthubd import domain, logs
from reporthubd.ids import new_id
from reporthubd.store import schedules, schema
from reporthubd.store.database import Store, driver_of, error_line, mark_clean, mysql_time
from reporthubd.store.types import UTCDateTime

log = logs.get(__name__)

_e = schema.executions
# Rows per INSERT statement: SQLite allows 32766 bound variables, so 1000 rows x 9 columns fits.
CHUNK = 1000


@dataclass(frozen=True, slots=True)
class FireClaim:
    """One fire of one schedule, to be claimed as PENDING (run it) or SKIPPED (with reason)."""

    schedule_id: int
    config_id: int
    scheduled_for: datetime
    skipped_reason: str | None = None


FireKey = tuple[int, datetime]
"""(schedule_id, scheduled_for): what the unique key of a schedule's claim is made of."""


@dataclass(frozen=True, slots=True)
class Claimed:
    claim: FireClaim
    execution_id: str
    skipped: bool
    """The row, as the store holds it, is SKIPPED (else PENDING: to be run). Usually what the
    claim asked for; for an id an earlier, failed attempt may have committed, what it wrote."""


def _row(claim: FireClaim, execution_id: str, node_id: str, now: datetime) -> dict[str, Any]:
    skipped = claim.skipped_reason is not None
    return {
        "id": execution_id,
        "config_id": claim.config_id,
        "schedule_id": claim.schedule_id,
        "trigger_type": domain.TriggerType.SCHEDULE.value,
        "scheduled_for": claim.scheduled_for,
        "status": (domain.ExecutionStatus.SKIPPED if skipped else domain.ExecutionStatus.PENDING),
        "node_id": node_id,
        "error_message": claim.skipped_reason,
        "created_at": now,
        "finished_at": now if skipped else None,
    }


# MySQL/MariaDB: a claim transaction is one round trip (several statements in one query).
# A pending claim sends only what has no default (status PENDING, attempt 0); the claim time
# is the session variable set when the statement is sent, so it can be written out early.
_MYSQL_PENDING_COLUMNS = (
    "id, config_id, schedule_id, trigger_type, scheduled_for, node_id, created_at"
)
_MYSQL_PENDING_ROW = "(%s, %s, %s, %s, %s, %s, @rh_claimed_at)"
_MYSQL_ALL_COLUMNS = (
    "id, config_id, schedule_id, trigger_type, scheduled_for, status, node_id, "
    "error_message, created_at, finished_at"
)
_MYSQL_ALL_ROW = "(%s, %s, %s, %s, %s, %s, %s, %s, @rh_claimed_at, IF(%s, @rh_claimed_at, NULL))"


@dataclass(frozen=True, slots=True)
class PreparedClaims:
    """Claims made ready to send: ids drawn and, on MySQL/MariaDB, the INSERT statements written
    out by the driver's own parameter binding (`mogrify`), so that at the due instant only
    the round trip to the store remains. Claiming them is still the insert, at send time."""

    claims: Sequence[FireClaim]
    ids: Sequence[str]
    node_id: str
    mysql_inserts: tuple[bytes, ...] = ()
    recheck: bool = False
    """Some ids were sent before by an attempt that failed without a clear answer: a row the
    unique key refuses may be that attempt's, so it is looked up by id (the MySQL path always
    looks up refused rows)."""


def _mysql_inserts(
    cursor: Any, claims: Sequence[FireClaim], ids: Sequence[str], node_id: str
) -> tuple[bytes, ...]:
    """INSERT IGNORE statements (CHUNK rows each) with every value bound by the driver."""
    times: dict[datetime, str] = {}
    schedule = domain.TriggerType.SCHEDULE.value
    pending = domain.ExecutionStatus.PENDING.value
    skipped = domain.ExecutionStatus.SKIPPED.value
    encoding = cursor.connection.encoding
    out: list[bytes] = []
    for start in range(0, len(claims), CHUNK):
        part = claims[start : start + CHUNK]
        full = any(claim.skipped_reason is not None for claim in part)
        params: list[Any] = []
        for claim, execution_id in zip(part, ids[start : start + CHUNK], strict=True):
            when = times.get(claim.scheduled_for)
            if when is None:
                when = times[claim.scheduled_for] = mysql_time(claim.scheduled_for)
            if not full:
                params += (
                    execution_id,
                    claim.config_id,
                    claim.schedule_id,
                    schedule,
                    when,
                    node_id,
                )
                continue
            reason = claim.skipped_reason
            params += (
                execution_id,
                claim.config_id,
                claim.schedule_id,
                schedule,
                when,
                pending if reason is None else skipped,
                node_id,
                reason,
                reason is not None,
            )
        columns, row = (
            (_MYSQL_ALL_COLUMNS, _MYSQL_ALL_ROW)
            if full
            else (_MYSQL_PENDING_COLUMNS, _MYSQL_PENDING_ROW)
        )
        sql = f"INSERT IGNORE INTO {_e.name} ({columns}) VALUES " + ", ".join([row] * len(part))
        out.append(cursor.mogrify(sql, tuple(params)).encode(encoding, "surrogateescape"))
    return tuple(out)


async def prepare_claims(
    store: Store, slices: Iterable[Sequence[FireClaim]], *, node_id: str
) -> list[PreparedClaims]:
    """Make each slice of claims ready to send (see PreparedClaims). Yields to the event loop
    between slices: a big minute boundary is prepared without stalling the control plane."""
    if store.dialect != "mysql":
        return [
            PreparedClaims(claims=part, ids=[new_id() for _ in part], node_id=node_id)
            for part in slices
        ]
    prepared: list[PreparedClaims] = []
    async with store.engine.connect() as conn:
        driver = await driver_of(conn)
        cursor = await driver.cursor()
        for part in slices:
            ids = [new_id() for _ in part]
            inserts = _mysql_inserts(cursor, part, ids, node_id)
            prepared.append(
                PreparedClaims(claims=part, ids=ids, node_id=node_id, mysql_inserts=inserts)
            )
            await asyncio.sleep(0)
    return prepared


async def open_connections(store: Store, count: int) -> None:
    """Have `count` store connections open in the pool (each checked at checkout), so that
    claims sent at once do not wait for new connections to be made."""
    if store.dialect == "sqlite":
        return
    connections = [store.engine.connect() for _ in range(count)]
    try:
        await asyncio.gather(*(conn.start() for conn in connections))
    finally:
        for conn in connections:
            await conn.close()


async def _send_mysql(
    conn: AsyncConnection, prepared: PreparedClaims, then_record: Sequence[schedules.Run]
) -> tuple[dict[str, str | None], datetime]:
    """One round trip: READ COMMITTED (no gap locks between nodes inserting the same keys, so
    fewer waits and no deadlocks), the claim time, the INSERTs, COMMIT, then `then_record`'s
    UPDATEs of report_schedules and their own COMMIT. Returns the ids that are ours (with the
    status the store holds, when read back) and when the claim committed. When every row went
    in (the common case) all ids are ours; otherwise read back which of them exist. A failed
    bookkeeping UPDATE is logged, not raised: the claims are committed. Statements not
    prepared beforehand are written out here."""
    driver = await driver_of(conn)
    inserts = prepared.mysql_inserts
    cursor = await driver.cursor()
    if not inserts:
        inserts = _mysql_inserts(cursor, prepared.claims, prepared.ids, prepared.node_id)
    bookkeeping = schedules.mysql_statements(cursor, schedules.updates(then_record))
    claimed_at = driver.escape(mysql_time(datetime.now(UTC))).encode()
    query = b"; ".join(
        (
            b"SET TRANSACTION ISOLATION LEVEL READ COMMITTED",
            b"SET @rh_claimed_at = " + claimed_at,
            *inserts,
            b"COMMIT",
            *bookkeeping,
            *([b"COMMIT"] if bookkeeping else []),
        )
    )
    try:
        async with cursor:
            await cursor.execute(query)  # the cursor is at the first result: SET TRANSACTION
            await cursor.nextset()  # SET @rh_claimed_at
            inserted = 0
            for _ in inserts:
                await cursor.nextset()
                inserted += max(0, cursor.rowcount)
            await cursor.nextset()  # COMMIT
            committed = datetime.now(UTC)
            clean = await _drain(cursor, len(bookkeeping))
            if inserted == len(prepared.ids):
                if clean:
                    await mark_clean(conn)  # it ended with COMMIT: nothing to roll back
                return dict.fromkeys(prepared.ids), committed
            await cursor.execute(
                f"SELECT id, status FROM {_e.name} WHERE id IN ("
                + ", ".join(["%s"] * len(prepared.ids))
                + ")",
                tuple(prepared.ids),
            )
            found = {row[0]: row[1] for row in await cursor.fetchall()}
            await driver.rollback()
            return found, committed
    except BaseException:
        # the statement went around SQLAlchemy: the connection's state is unknown, drop it
        await conn.invalidate()
        raise


async def _drain(cursor: Any, bookkeeping: int) -> bool:
    """Read the results after the claim's COMMIT. Returns False when a bookkeeping statement
    failed (logged; the server skipped the rest, and the pool's rollback ends its transaction)."""
    try:
        while await cursor.nextset():
            pass
    except Exception as exc:
        if not bookkeeping:
            raise
        log.warning("writing last_run_at failed", error=error_line(exc))
        return False
    return True


async def _insert_ignoring_taken(
    conn: AsyncConnection,
    claims: Sequence[FireClaim],
    ids: Sequence[str],
    node_id: str,
    now: datetime,
) -> set[str]:
    rows = [
        _row(claim, execution_id, node_id, now)
        for claim, execution_id in zip(claims, ids, strict=True)
    ]
    if conn.dialect.name == "postgresql":
        pg = postgresql.insert(_e).values(rows).on_conflict_do_nothing().returning(_e.c.id)
        return set((await conn.execute(pg)).scalars())
    lite = sqlite.insert(_e).values(rows).on_conflict_do_nothing().returning(_e.c.id)
    return set((await conn.execute(lite)).scalars())


async def claim_prepared(
    store: Store, prepared: PreparedClaims, *, then_record: Sequence[schedules.Run] = ()
) -> tuple[list[Claimed], datetime]:
    """Insert the execution rows of `prepared` in one transaction; return those this node
    inserted (the others were claimed first by another node or an earlier run) and the
    moment the transaction committed. `then_record` (last_run_at / next_run_at of the claimed
    schedules) is written once the claim has committed: on MySQL/MariaDB in the same round
    trip. Its failure is logged, never raised."""
    claims, ids = prepared.claims, prepared.ids
    if not claims:
        return [], datetime.now(UTC)
    async with store.engine.connect() as conn:
        if store.dialect == "mysql":
            ours, committed = await _send_mysql(conn, prepared, then_record)
            then_record = ()
        else:
            now = datetime.now(UTC)
            ours = {}
            for start in range(0, len(claims), CHUNK):
                inserted = await _insert_ignoring_taken(
                    conn,
                    claims[start : start + CHUNK],
                    ids[start : start + CHUNK],
                    prepared.node_id,
                    now,
                )
                ours |= dict.fromkeys(inserted)
            await conn.commit()
            committed = datetime.now(UTC)
            refused = [execution_id for execution_id in ids if execution_id not in ours]
            if prepared.recheck and refused:
                ours |= await _statuses(conn, refused)
    if then_record:
        try:
            await schedules.record_runs(store, then_record)
        except Exception as exc:  # bookkeeping only: the claims are committed
            log.warning("writing last_run_at failed", error=error_line(exc))
    claimed = []
    for claim, execution_id in zip(claims, ids, strict=True):
        if execution_id not in ours:
            continue  # another node's, or an earlier run's
        stored = ours[execution_id]  # None: inserted just now, as the claim asked
        skipped = (
            claim.skipped_reason is not None
            if stored is None
            else stored == domain.ExecutionStatus.SKIPPED.value
        )
        claimed.append(Claimed(claim=claim, execution_id=execution_id, skipped=skipped))
    return claimed, committed


async def _statuses(conn: AsyncConnection, ids: Sequence[str]) -> dict[str, str | None]:
    """The stored status of those of `ids` that exist."""
    found: dict[str, str | None] = {}
    for start in range(0, len(ids), CHUNK):
        query = sa.select(_e.c.id, _e.c.status).where(_e.c.id.in_(ids[start : start + CHUNK]))
        found |= {row.id: row.status for row in await conn.execute(query)}
    await conn.rollback()
    return found


def ready_claims(
    claims: Sequence[FireClaim], *, node_id: str, reuse: Mapping[FireKey, str] | None = None
) -> PreparedClaims:
    """Claims with their ids drawn (statements are written when sent). `reuse` gives the id an
    earlier, failed attempt sent for a fire: if that attempt did commit, the row the unique key
    refuses is found as ours (see PreparedClaims.recheck)."""
    reuse = reuse or {}
    ids = [reuse.get((claim.schedule_id, claim.scheduled_for)) or new_id() for claim in claims]
    return PreparedClaims(
        claims=claims,
        ids=ids,
        node_id=node_id,
        recheck=any((claim.schedule_id, claim.scheduled_for) in reuse for claim in claims),
    )


async def claim_fires(
    store: Store,
    claims: Sequence[FireClaim],
    *,
    node_id: str,
    then_record: Sequence[schedules.Run] = (),
) -> tuple[list[Claimed], datetime]:
    """Prepare and claim `claims` at once, in one transaction (see claim_prepared)."""
    if not claims:
        return [], datetime.now(UTC)
    prepared = ready_claims(claims, node_id=node_id)
    return await claim_prepared(store, prepared, then_record=then_record)


async def latest_fires(store: Store) -> dict[int, datetime]:
    """The latest claimed fire (`scheduled_for` of a trigger_type `schedule` row) per schedule:
    with `last_run_at`, where catch-up after a restart starts."""
    query = (
        sa.select(_e.c.schedule_id, sa.func.max(_e.c.scheduled_for))
        .where(
            _e.c.schedule_id.is_not(None),
            _e.c.trigger_type == domain.TriggerType.SCHEDULE.value,
        )
        .group_by(_e.c.schedule_id)
    )
    async with store.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    found: dict[int, datetime] = {}
    for schedule_id, latest in rows:
        if latest is not None:
            found[int(schedule_id)] = _aware(latest)
    return found


def _aware(value: datetime | str) -> datetime:
    # MAX() over a UTCDateTime column loses the type decorator on some dialects.
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


async def _next_attempt(
    conn: AsyncConnection, schedule_id: int | None, scheduled_for: datetime | None
) -> int:
    if schedule_id is None or scheduled_for is None:
        return 1
    highest = (
        await conn.execute(
            sa.select(sa.func.max(_e.c.attempt)).where(
                _e.c.schedule_id == schedule_id, _e.c.scheduled_for == scheduled_for
            )
        )
    ).scalar()
    return 1 if highest is None else int(highest) + 1


async def insert_rerun(
    store: Store,
    *,
    config_id: int,
    schedule_id: int | None,
    scheduled_for: datetime | None,
    trigger_type: domain.TriggerType,
    node_id: str,
    parameters: dict[str, Any] | None = None,
) -> str:
    """Insert a PENDING run that is not the schedule's own claim of a fire (manual trigger):
    it takes the next free attempt of (schedule_id, scheduled_for), never attempt 0."""
    for _ in range(5):
        execution_id = new_id()
        try:
            async with store.engine.begin() as conn:
                attempt = await _next_attempt(conn, schedule_id, scheduled_for)
                await conn.execute(
                    sa.insert(_e).values(
                        id=execution_id,
                        config_id=config_id,
                        schedule_id=schedule_id,
                        trigger_type=trigger_type.value,
                        scheduled_for=scheduled_for,
                        status=domain.ExecutionStatus.PENDING.value,
                        parameters=parameters,
                        node_id=node_id,
                        attempt=attempt,
                        created_at=datetime.now(UTC),
                    )
                )
        except sa.exc.IntegrityError:
            continue  # another node took that attempt at the same moment: take the next
        return execution_id
    raise RuntimeError(f"could not insert a run for schedule {schedule_id} at {scheduled_for}")


# -- lost executions --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LostExecution:
    id: str
    config_id: int
    schedule_id: int | None
    scheduled_for: datetime | None
    status: domain.ExecutionStatus
    node_id: str | None
    heartbeat_at: datetime | None
    parameters: dict[str, Any] | None
    recovers_id: str | None = None


T = TypeVar("T")
Bound: TypeAlias = T | sa.BindParameter[T]
"""A value, or the bind parameter that will carry it (statements built once, run often)."""


def _retrying(execution_id: sa.ColumnElement[Any]) -> sa.Exists:
    """A RETRYING delivery log: the delivery-retry ledger owns the execution, not a node."""
    logs = schema.delivery_logs
    return sa.exists().where(
        logs.c.execution_id == execution_id,
        logs.c.status == domain.DeliveryStatus.RETRYING.value,
    )


def _stale_running(cutoff: Bound[datetime]) -> sa.ColumnElement[bool]:
    return sa.and_(
        _e.c.status == domain.ExecutionStatus.RUNNING.value,
        sa.or_(
            _e.c.heartbeat_at < cutoff,
            sa.and_(
                _e.c.heartbeat_at.is_(None),
                sa.func.coalesce(_e.c.started_at, _e.c.created_at) < cutoff,
            ),
        ),
        ~_retrying(_e.c.id),
    )


def _live_nodes(cutoff: Bound[datetime]) -> sa.Select[Any]:
    nodes = schema.nodes
    return sa.select(nodes.c.node_id).where(
        nodes.c.heartbeat_at >= cutoff, nodes.c.stopped_at.is_(None)
    )


def _stopped_nodes() -> sa.Select[Any]:
    return sa.select(schema.nodes.c.node_id).where(schema.nodes.c.stopped_at.is_not(None))


def _pending_of_other(own_node: Bound[str]) -> sa.ColumnElement[bool]:
    return sa.and_(
        _e.c.status == domain.ExecutionStatus.PENDING.value,
        _e.c.node_id.is_not(None),
        _e.c.node_id != own_node,
    )


def _orphaned_pending(cutoff: Bound[datetime], own_node: Bound[str]) -> sa.ColumnElement[bool]:
    """PENDING, claimed by another node that is not live: stopped cleanly (at once), or
    silent for longer than the cutoff (a claim older than the cutoff)."""
    return sa.and_(
        _pending_of_other(own_node),
        _e.c.node_id.not_in(_live_nodes(cutoff)),
        sa.or_(_e.c.created_at < cutoff, _e.c.node_id.in_(_stopped_nodes())),
    )


def _stopped_nodes_pending(own_node: Bound[str]) -> sa.ColumnElement[bool]:
    """PENDING, claimed by another node that has stopped cleanly (and not started again): it
    does not depend on heartbeats, so it is judged even right after a store outage."""
    return sa.and_(_pending_of_other(own_node), _e.c.node_id.in_(_stopped_nodes()))


def _own_leftovers(node_id: Bound[str], started_at: Bound[datetime]) -> sa.ColumnElement[bool]:
    """This node's rows from a previous process: PENDING claimed before this one started, or
    RUNNING since before it started (a run this process adopted and started is not one)."""
    return sa.and_(
        _e.c.node_id == node_id,
        sa.or_(
            sa.and_(
                _e.c.status == domain.ExecutionStatus.PENDING.value,
                _e.c.created_at < started_at,
            ),
            sa.and_(
                _e.c.status == domain.ExecutionStatus.RUNNING.value,
                sa.func.coalesce(_e.c.started_at, _e.c.created_at) < started_at,
            ),
        ),
        ~_retrying(_e.c.id),
    )


_LOST_COLUMNS = (
    _e.c.id,
    _e.c.config_id,
    _e.c.schedule_id,
    _e.c.scheduled_for,
    _e.c.status,
    _e.c.node_id,
    _e.c.heartbeat_at,
    _e.c.parameters,
    _e.c.recovers_id,
)


def _lost(row: Any) -> LostExecution:
    return LostExecution(
        id=row.id,
        config_id=int(row.config_id),
        schedule_id=row.schedule_id,
        scheduled_for=row.scheduled_for,
        status=domain.ExecutionStatus(row.status),
        node_id=row.node_id,
        heartbeat_at=row.heartbeat_at,
        parameters=row.parameters if isinstance(row.parameters, dict) else None,
        recovers_id=row.recovers_id,
    )


def _lost_condition(
    cutoff: Bound[datetime], node_id: Bound[str], started_at: Bound[datetime], judge_others: bool
) -> sa.ColumnElement[bool]:
    if not judge_others:
        return sa.or_(_own_leftovers(node_id, started_at), _stopped_nodes_pending(node_id))
    return sa.or_(
        _stale_running(cutoff),
        _orphaned_pending(cutoff, node_id),
        _own_leftovers(node_id, started_at),
    )


async def find_lost(
    store: Store,
    *,
    cutoff: datetime,
    node_id: str,
    started_at: datetime,
    judge_others: bool = True,
    limit: int = 500,
) -> list[LostExecution]:
    """Executions no live node owns: RUNNING with a heartbeat older than `cutoff`; PENDING
    claimed by a node whose own heartbeat is older than `cutoff`; and this node's own PENDING or
    RUNNING rows from before it started (a previous process with the same node id). A RUNNING
    execution with a RETRYING delivery log belongs to the retry ledger and is never listed.
    Without `judge_others`, only this node's own leftovers are listed."""
    params = {"rh_cutoff": cutoff, "rh_node": node_id, "rh_started": started_at}
    async with store.engine.connect() as conn:
        rows = (await conn.execute(_find_lost_query(judge_others, limit), params)).all()
    return [_lost(row) for row in rows]


@functools.cache
def _find_lost_query(judge_others: bool, limit: int) -> sa.Select[Any]:
    """find_lost's statement, built once: the sweep runs it every heartbeat interval, and
    building this condition anew cost more CPU than the round trip."""
    condition = _lost_condition(
        sa.bindparam("rh_cutoff", type_=UTCDateTime()),
        sa.bindparam("rh_node", type_=sa.String()),
        sa.bindparam("rh_started", type_=UTCDateTime()),
        judge_others,
    )
    return sa.select(*_LOST_COLUMNS).where(condition).order_by(_e.c.created_at).limit(limit)


async def fail_lost(
    store: Store,
    lost: LostExecution,
    *,
    cutoff: datetime,
    node_id: str,
    started_at: datetime,
    reason: str,
    recover: bool,
    judge_others: bool = True,
) -> tuple[bool, str | None]:
    """Mark one lost execution FAILED with `reason`, by a conditional update that re-checks it
    is still lost (so exactly one node wins), and, when `recover`, insert in the same
    transaction its new run (trigger_type `recovery`, same `scheduled_for`, next attempt).
    Returns whether this call marked it, and the new run's id (None: not recovered)."""
    now = datetime.now(UTC)
    still_lost = _lost_condition(cutoff, node_id, started_at, judge_others)
    async with store.engine.begin() as conn:
        updated = await conn.execute(
            sa.update(_e)
            .where(_e.c.id == lost.id, _e.c.status == lost.status.value, still_lost)
            .values(
                status=domain.ExecutionStatus.FAILED.value,
                error_message=reason,
                finished_at=now,
            )
        )
        if not updated.rowcount:
            return False, None
        if not recover:
            return True, None
        execution_id = new_id()
        attempt = await _next_attempt(conn, lost.schedule_id, lost.scheduled_for)
        await conn.execute(
            sa.insert(_e).values(
                id=execution_id,
                config_id=lost.config_id,
                schedule_id=lost.schedule_id,
                trigger_type=domain.TriggerType.RECOVERY.value,
                scheduled_for=lost.scheduled_for,
                status=domain.ExecutionStatus.PENDING.value,
                parameters=lost.parameters,
                node_id=node_id,
                attempt=attempt,
                recovers_id=lost.recovers_id or lost.id,
                created_at=now,
            )
        )
    return True, execution_id


async def adopt_pending(
    store: Store,
    lost: LostExecution,
    *,
    cutoff: datetime,
    node_id: str,
    started_at: datetime,
    judge_others: bool = True,
) -> bool:
    """Take over a PENDING execution no live node owns (find_lost listed it): a conditional
    update that re-checks it is still lost sets `node_id` to this node, the status stays
    PENDING, so exactly one node adopts it; the caller then submits it. This node's own
    leftovers are its already. Returns whether this node now owns it."""
    if lost.status is not domain.ExecutionStatus.PENDING:
        raise ValueError(f"execution {lost.id} is {lost.status.value}, not PENDING")
    if lost.node_id == node_id:
        return True
    async with store.engine.begin() as conn:
        updated = await conn.execute(
            sa.update(_e)
            .where(
                _e.c.id == lost.id,
                _e.c.status == domain.ExecutionStatus.PENDING.value,
                _e.c.node_id == lost.node_id,
                _lost_condition(cutoff, node_id, started_at, judge_others),
            )
            .values(node_id=node_id)
        )
    return bool(updated.rowcount)


async def count_active(store: Store) -> dict[str, dict[str, int]]:
    """PENDING and RUNNING executions per node: {node_id: {status: count}}."""
    query = (
        sa.select(_e.c.node_id, _e.c.status, sa.func.count())
        .where(
            _e.c.status.in_(
                [domain.ExecutionStatus.PENDING.value, domain.ExecutionStatus.RUNNING.value]
            )
        )
        .group_by(_e.c.node_id, _e.c.status)
    )
    async with store.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    counts: dict[str, dict[str, int]] = {}
    for node, status, count in rows:
        counts.setdefault(node or "", {})[status] = int(count)
    return counts


async def latest_runs(store: Store, schedule_ids: Iterable[int] | None = None) -> dict[int, Any]:
    """Per schedule, its newest execution row (highest scheduled_for, then attempt): for the
    jobs view. Returns {schedule_id: row with id, scheduled_for, status, trigger_type}."""
    newest = (
        sa.select(_e.c.schedule_id, sa.func.max(_e.c.scheduled_for).label("latest"))
        .where(_e.c.schedule_id.is_not(None))
        .group_by(_e.c.schedule_id)
    )
    if schedule_ids is not None:
        newest = newest.where(_e.c.schedule_id.in_(list(schedule_ids)))
    sub = newest.subquery()
    query = (
        sa.select(
            _e.c.schedule_id,
            _e.c.id,
            _e.c.scheduled_for,
            _e.c.status,
            _e.c.trigger_type,
            _e.c.attempt,
        )
        .join(
            sub,
            sa.and_(_e.c.schedule_id == sub.c.schedule_id, _e.c.scheduled_for == sub.c.latest),
        )
        .order_by(_e.c.attempt)
    )
    async with store.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return {int(row.schedule_id): row for row in rows}  # highest attempt wins (ordered)
