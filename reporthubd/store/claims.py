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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from reporthubd import domain, logs
from reporthubd.ids import new_id
from reporthubd.store import schedules, schema
from reporthubd.store.database import Store, driver_of, error_line, mark_clean, mysql_time

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
    shift: tuple[datetime, str] | None = None
    """A fire its business calendar moved: the instant it runs at, and why (written beside the
    claimed row by `record_shifts`; the claim key keeps the logical `scheduled_for`)."""


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
# A pending claim sends only what has no default (status PENDING, attempt 0). The claim time is
# written out when the statement is sent; statements written before (PreparedClaims) name the
# session variable @rh_claimed_at instead, set in the same round trip.
_MYSQL_PENDING_COLUMNS = (
    "id, config_id, schedule_id, trigger_type, scheduled_for, node_id, created_at"
)
_MYSQL_ALL_COLUMNS = (
    "id, config_id, schedule_id, trigger_type, scheduled_for, status, node_id, "
    "error_message, created_at, finished_at"
)
_CLAIMED_AT = "@rh_claimed_at"


@dataclass(frozen=True, slots=True)
class PreparedClaims:
    """Claims made ready to send: ids drawn and, on MySQL/MariaDB, the INSERT statements written
    out with the driver's own escaping (`_mysql_inserts`), so that at the due instant only
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
    driver: Any,
    claims: Sequence[FireClaim],
    ids: Sequence[str],
    node_id: str,
    claimed_at: str = _CLAIMED_AT,
) -> tuple[bytes, ...]:
    """INSERT IGNORE statements (CHUNK rows each): every text value quoted by the driver's own
    escaping (`escape`, what its parameter binding calls), integers written as integers, each
    distinct value escaped once (a claim's values repeat: the node, the status, the fire time).
    `claimed_at` is the claim time's SQL: a literal, or the session variable."""
    escape = driver.escape
    node = escape(node_id)
    schedule = escape(domain.TriggerType.SCHEDULE.value)
    pending = escape(domain.ExecutionStatus.PENDING.value)
    skipped = escape(domain.ExecutionStatus.SKIPPED.value)
    times: dict[datetime, str] = {}
    out: list[bytes] = []
    for start in range(0, len(claims), CHUNK):
        part = claims[start : start + CHUNK]
        full = any(claim.skipped_reason is not None for claim in part)
        rows: list[str] = []
        for claim, execution_id in zip(part, ids[start : start + CHUNK], strict=True):
            when = times.get(claim.scheduled_for)
            if when is None:
                when = times[claim.scheduled_for] = escape(mysql_time(claim.scheduled_for))
            head = (
                f"({escape(execution_id)}, {int(claim.config_id)}, {int(claim.schedule_id)}, "
                f"{schedule}, {when}"
            )
            if not full:
                rows.append(f"{head}, {node}, {claimed_at})")
                continue
            reason = claim.skipped_reason
            if reason is None:
                rows.append(f"{head}, {pending}, {node}, NULL, {claimed_at}, NULL)")
            else:
                rows.append(
                    f"{head}, {skipped}, {node}, {escape(reason)}, {claimed_at}, {claimed_at})"
                )
        columns = _MYSQL_ALL_COLUMNS if full else _MYSQL_PENDING_COLUMNS
        sql = f"INSERT IGNORE INTO {_e.name} ({columns}) VALUES " + ", ".join(rows)
        out.append(sql.encode(driver.encoding, "surrogateescape"))
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
        for part in slices:
            ids = [new_id() for _ in part]
            inserts = _mysql_inserts(driver, part, ids, node_id)
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
    conn: AsyncConnection,
    driver: Any,
    prepared: PreparedClaims,
    then_record: Sequence[schedules.Run],
    *,
    read_committed: bool,
) -> tuple[dict[str, str | None], datetime]:
    """One round trip, one transaction: READ COMMITTED (no gap locks between nodes inserting
    the same keys; set here unless the session already is, `read_committed`), then
    `then_record`'s UPDATEs of report_schedules, then the INSERTs, then COMMIT. Returns the ids
    that are ours (with the status the store holds, when read back) and when the claim
    committed. When every row went in (the common case) all ids are ours; otherwise read back
    which of them exist. Statements not prepared beforehand are written out here.

    The UPDATEs come first so that two nodes claiming the same fires serialize on the
    schedule rows: the first X-locks them (in id order: `schedules.updates` sorts them), the
    other's UPDATE waits for its COMMIT and then finds the fire's row taken. Nothing either
    holds is waited for by the other (report_executions has no foreign key to report_schedules,
    so an INSERT locks no schedule row), so they cannot deadlock. The UPDATE is guarded: an
    older fire never moves last_run_at back. A failed bookkeeping UPDATE (a lock another
    session holds for longer than the lock wait timeout) is logged, not raised: the
    transaction is rolled back and the claim is sent again alone, so it never fails for it."""
    cursor = await driver.cursor()
    claimed_at = driver.escape(mysql_time(datetime.now(UTC)))
    head = [] if read_committed else [b"SET TRANSACTION ISOLATION LEVEL READ COMMITTED"]
    inserts = prepared.mysql_inserts
    if inserts:
        head.append(f"SET {_CLAIMED_AT} = {claimed_at}".encode())
    else:
        inserts = _mysql_inserts(
            driver, prepared.claims, prepared.ids, prepared.node_id, claimed_at
        )
    bookkeeping = schedules.mysql_statements(cursor, schedules.updates(then_record))
    try:
        async with cursor:
            try:
                inserted = await _run_claim(cursor, head, bookkeeping, inserts)
            except _BookkeepingFailed as failed:
                log.warning("writing last_run_at failed", error=error_line(failed.error))
                await driver.rollback()
                inserted = await _run_claim(cursor, head, [], inserts)
            committed = datetime.now(UTC)
            if inserted == len(prepared.ids):
                if not read_committed:  # a pooled connection: no ROLLBACK when it goes back
                    await mark_clean(conn)
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


class _BookkeepingFailed(Exception):
    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


async def _run_claim(
    cursor: Any, head: Sequence[bytes], bookkeeping: Sequence[bytes], inserts: Sequence[bytes]
) -> int:
    """Send `head`, `bookkeeping`, `inserts` and COMMIT as one query; return the rows the
    INSERTs put in. The server stops at a statement that fails: an error in `head` or
    `bookkeeping` (nothing of the claim ran) is raised as _BookkeepingFailed when there is
    bookkeeping, the others as they are."""
    from pymysql.err import MySQLError  # type: ignore[import-untyped]

    before = len(head) + len(bookkeeping)
    try:
        await cursor.execute(b"; ".join((*head, *bookkeeping, *inserts, b"COMMIT")))
        for _ in range(1, before):  # the cursor is at the first statement's result
            await cursor.nextset()
    except MySQLError as exc:
        if not bookkeeping:
            raise
        raise _BookkeepingFailed(exc) from exc
    inserted = 0
    for index in range(len(inserts)):
        if index or before:
            await cursor.nextset()
        inserted += max(0, cursor.rowcount)
    await cursor.nextset()  # COMMIT
    return inserted


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
    # The store's own dialect only: a SQLite daemon never loads SQLAlchemy's PostgreSQL dialect.
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        pg = postgresql.insert(_e).values(rows).on_conflict_do_nothing().returning(_e.c.id)
        return set((await conn.execute(pg)).scalars())
    from sqlalchemy.dialects import sqlite

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
    line = store.claim_line
    async with line.connect() as conn:
        if store.dialect == "mysql":
            read_committed = line.is_read_committed(conn)
            ours, committed = await _send_mysql(
                conn,
                await line.driver(conn),
                prepared,
                then_record,
                read_committed=read_committed,
            )
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


async def next_attempt(
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


async def insert_pending(
    conn: AsyncConnection,
    *,
    config_id: int,
    schedule_id: int | None,
    scheduled_for: datetime | None,
    trigger_type: domain.TriggerType,
    node_id: str,
    attempt: int,
    created_at: datetime | None = None,
    **extra: Any,
) -> str:
    """Insert one PENDING run row of (schedule_id, scheduled_for, attempt) in `conn`'s
    transaction; `extra` are its other columns (parameters, recovers_id, shifted_to...).
    Returns the new run's id."""
    execution_id = new_id()
    await conn.execute(
        sa.insert(_e).values(
            id=execution_id,
            config_id=config_id,
            schedule_id=schedule_id,
            trigger_type=trigger_type.value,
            scheduled_for=scheduled_for,
            status=domain.ExecutionStatus.PENDING.value,
            node_id=node_id,
            attempt=attempt,
            created_at=created_at or datetime.now(UTC),
            **extra,
        )
    )
    return execution_id


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
        try:
            async with store.engine.begin() as conn:
                execution_id = await insert_pending(
                    conn,
                    config_id=config_id,
                    schedule_id=schedule_id,
                    scheduled_for=scheduled_for,
                    trigger_type=trigger_type,
                    node_id=node_id,
                    attempt=await next_attempt(conn, schedule_id, scheduled_for),
                    parameters=parameters,
                )
        except sa.exc.IntegrityError:
            continue  # another node took that attempt at the same moment: take the next
        return execution_id
    raise RuntimeError(f"could not insert a run for schedule {schedule_id} at {scheduled_for}")


async def record_shifts(store: Store, shifted: Sequence[Claimed]) -> None:
    """Write `shifted_to` and `shift_reason` on the rows this node just claimed for fires its
    calendar moved (rare: a few a year per schedule, so one UPDATE each)."""
    todo = [c for c in shifted if c.claim.shift is not None]
    if not todo:
        return
    async with store.engine.begin() as conn:
        for claimed in todo:
            assert claimed.claim.shift is not None
            shifted_to, reason = claimed.claim.shift
            await conn.execute(
                sa.update(_e)
                .where(_e.c.id == claimed.execution_id)
                .values(shifted_to=shifted_to, shift_reason=reason[:1000])
            )
