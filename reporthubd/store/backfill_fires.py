"""The fires of a backfill in the store (revision 0010): reading them, claiming each, settling
each with its run's outcome, and the runs a cancelled backfill still has (store/backfills.py
holds the request and the lease).

`claim_fire` claims one fire in one transaction: the lease is checked (and extended) by a
conditional update, the fire's attempts are read, the rule (backfill_rules.decide) says whether
to insert the next attempt (attempt 0 is the schedule's own claim key, the one the live scheduler
inserts) or to follow a run already there, and the fire's row records the attempt and execution
taken. A fire its calendar moves is inserted with `shifted_to` and `shift_reason`, as the live
scheduler records them (scheduler/calendar_claims.py, claims.record_shifts). So a node that dies
after the claim leaves a fire that says which execution is its own, and one that lost its lease
claims nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from reporthubd import backfill_rules as rules
from reporthubd import domain
from reporthubd.store import claims, schema
from reporthubd.store.backfills import (
    CANCELLED,
    CHUNK,
    FIRE_STARTED,
    Backfill,
    LeaseLost,
    attempt_record,
    held_by,
)
from reporthubd.store.database import Store
from reporthubd.timeutil import utcnow

_b = schema.backfills
_f = schema.backfill_fires
_e = schema.executions

Shift = tuple[datetime, str]
"""Where a fire its calendar moves runs, and why (calendars.Fire.actual, shift_reason)."""


@dataclass(frozen=True, kw_only=True)
class FireRow:
    scheduled_for: datetime
    status: str
    attempt: int | None
    execution_id: str | None


async def fires(store: Store, backfill_id: str) -> list[FireRow]:
    query = (
        sa.select(_f.c.scheduled_for, _f.c.status, _f.c.attempt, _f.c.execution_id)
        .where(_f.c.backfill_id == backfill_id)
        .order_by(_f.c.scheduled_for)
    )
    async with store.engine.connect() as conn:
        return [
            FireRow(
                scheduled_for=row.scheduled_for,
                status=row.status,
                attempt=row.attempt,
                execution_id=row.execution_id,
            )
            for row in await conn.execute(query)
        ]


@dataclass(frozen=True, kw_only=True)
class ClaimedFire:
    execution_id: str
    attempt: int
    inserted: bool
    """True: this call inserted the run (submit it); False: it follows a run already there."""
    status: domain.ExecutionStatus
    reason: str


async def claim_fire(
    store: Store,
    found: Backfill,
    scheduled_for: datetime,
    *,
    node_id: str,
    lease_seconds: float,
    shift: Shift | None = None,
) -> ClaimedFire:
    """Claim one fire of `found` (see the module docstring); a run it inserts for a fire its
    calendar moves carries `shift`. Raises LeaseLost when this node no longer holds the
    backfill; retried when another node inserted the same attempt first."""
    for _ in range(5):
        try:
            return await _claim_fire(store, found, scheduled_for, node_id, lease_seconds, shift)
        except sa.exc.IntegrityError:
            continue  # the live scheduler (or a re-run) took that attempt: decide again
    raise RuntimeError(f"could not claim the fire {scheduled_for.isoformat()} of {found.id}")


async def _claim_fire(
    store: Store,
    found: Backfill,
    scheduled_for: datetime,
    node_id: str,
    lease_seconds: float,
    shift: Shift | None,
) -> ClaimedFire:
    now = utcnow()
    async with store.engine.begin() as conn:
        held = await conn.execute(
            sa.update(_b)
            .where(*held_by(found.id, node_id, now))
            .values(lease_until=now + timedelta(seconds=lease_seconds), updated_at=now)
        )
        if held.rowcount != 1:
            raise LeaseLost(found.id)
        rows = await conn.execute(
            sa.select(_e.c.scheduled_for, _e.c.attempt, _e.c.id, _e.c.status, _e.c.error_message)
            .where(_e.c.schedule_id == found.schedule_id, _e.c.scheduled_for == scheduled_for)
            .with_for_update()
        )
        past = rules.histories((row.scheduled_for, attempt_record(row)) for row in rows)
        choice = rules.decide(
            past.get(scheduled_for.astimezone(UTC), rules.FireHistory()), found.reprocess
        )
        if choice.attempt is not None:
            execution_id = await claims.insert_pending(
                conn,
                config_id=found.config_id,
                schedule_id=found.schedule_id,
                scheduled_for=scheduled_for,
                trigger_type=domain.TriggerType.BACKFILL,
                node_id=node_id,
                attempt=choice.attempt,
                created_at=now,
                shifted_to=shift[0] if shift else None,
                shift_reason=shift[1][:1000] if shift else None,
            )
            claimed = ClaimedFire(
                execution_id=execution_id,
                attempt=choice.attempt,
                inserted=True,
                status=domain.ExecutionStatus.PENDING,
                reason=choice.reason,
            )
        else:
            assert choice.follow is not None
            claimed = ClaimedFire(
                execution_id=choice.follow.execution_id,
                attempt=choice.follow.attempt,
                inserted=False,
                status=choice.follow.status,
                reason=choice.reason,
            )
        status = claimed.status.value if claimed.status in rules.TERMINAL_STATUSES else FIRE_STARTED
        await conn.execute(
            sa.update(_f)
            .where(_f.c.backfill_id == found.id, _f.c.scheduled_for == scheduled_for)
            .values(
                status=status,
                attempt=claimed.attempt,
                execution_id=claimed.execution_id,
                note=claimed.reason[:1000],
                updated_at=now,
            )
        )
    return claimed


async def outcomes(
    store: Store, schedule_id: int, started: Iterable[FireRow]
) -> dict[datetime, rules.Attempt]:
    """For each started fire, its latest attempt at or after the one it took (a lost run's
    recovery is the fire's outcome), once that attempt has ended."""
    wanted = {f.scheduled_for.astimezone(UTC): f.attempt or 0 for f in started}
    if not wanted:
        return {}
    keys = list(wanted)
    found: list[tuple[datetime, rules.Attempt]] = []
    async with store.engine.connect() as conn:
        for start in range(0, len(keys), CHUNK):
            rows = await conn.execute(
                sa.select(
                    _e.c.scheduled_for, _e.c.attempt, _e.c.id, _e.c.status, _e.c.error_message
                ).where(
                    _e.c.schedule_id == schedule_id,
                    _e.c.scheduled_for.in_(keys[start : start + CHUNK]),
                )
            )
            found += [(row.scheduled_for, attempt_record(row)) for row in rows]
    out: dict[datetime, rules.Attempt] = {}
    for when, past in rules.histories(found).items():
        later = [a for a in past.attempts if a.attempt >= wanted.get(when, 0)]
        if later and later[-1].status in rules.TERMINAL_STATUSES:
            out[when] = later[-1]
    return out


async def settle_fire(
    store: Store, backfill_id: str, scheduled_for: datetime, ended: rules.Attempt
) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(
            sa.update(_f)
            .where(
                _f.c.backfill_id == backfill_id,
                _f.c.scheduled_for == scheduled_for,
                _f.c.status == FIRE_STARTED,
            )
            .values(
                status=ended.status.value,
                attempt=ended.attempt,
                execution_id=ended.execution_id,
                note=(ended.error_message or ended.status.value)[:1000],
                updated_at=utcnow(),
            )
        )


@dataclass(frozen=True, kw_only=True)
class CancelledRun:
    execution_id: str
    backfill_id: str
    cancelled_by: str | None


async def cancelled_runs(store: Store, *, node_id: str) -> list[CancelledRun]:
    """The runs of this node that a cancelled backfill started and that have not ended (the
    store flag a run's owning node observes: only it can stop a run it holds).

    Asked every second by every node, so it starts from this node's active backfill runs (the
    executions' status index; usually none, and then nothing more is read), then the cancelled
    backfills of those schedules whose range holds them, then their fires by primary key. It
    never walks every cancelled backfill's fires: a join from the backfills side took 20 ms
    per call over 2,000 finished backfills of 30 fires on MariaDB (bench/backfill_cancel_poll.py).
    """
    active = [s.value for s in rules.ACTIVE_STATUSES]
    mine = sa.select(_e.c.id, _e.c.schedule_id, _e.c.scheduled_for).where(
        _e.c.status.in_(active),
        _e.c.node_id == node_id,
        _e.c.trigger_type == domain.TriggerType.BACKFILL.value,
    )
    out: list[CancelledRun] = []
    async with store.engine.connect() as conn:
        runs = (await conn.execute(mine)).all()
        if not runs:
            return out
        times = [r.scheduled_for for r in runs]
        cancelled = {
            row.id: row.cancelled_by
            for row in await conn.execute(
                sa.select(_b.c.id, _b.c.cancelled_by).where(
                    _b.c.status == CANCELLED,
                    _b.c.schedule_id.in_(sorted({int(r.schedule_id) for r in runs})),
                    _b.c.range_from <= max(times),
                    _b.c.range_to > min(times),
                )
            )
        }
        if not cancelled:
            return out
        for start in range(0, len(runs), CHUNK):
            chunk = runs[start : start + CHUNK]
            query = sa.select(_f.c.execution_id, _f.c.backfill_id).where(
                _f.c.backfill_id.in_(sorted(cancelled)),
                _f.c.scheduled_for.in_([r.scheduled_for for r in chunk]),
                _f.c.execution_id.in_([r.id for r in chunk]),
                _f.c.status == FIRE_STARTED,
            )
            out += [
                CancelledRun(
                    execution_id=row.execution_id,
                    backfill_id=row.backfill_id,
                    cancelled_by=cancelled[row.backfill_id],
                )
                for row in await conn.execute(query)
            ]
    return out
