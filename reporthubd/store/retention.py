"""Retention of the daemon's own ledgers beside its runs: notices, waits, backfills and late
fires older than `execution_retention_days` (the janitor's pass, Engine.clean_up, beside
executions.prune_executions and audiences.prune_bursts: the same cutoff, so a ledger row goes
with the runs it is about).

Only settled rows go, `batch_size` per transaction so no lock is held long:
- report_notices: SENT or FAILED (given up) notices created before the cutoff. A PENDING,
  SENDING or RETRYING notice is still someone's work, whatever its age.
- report_waits: RELEASED or EXPIRED waits decided before the cutoff whose run has ended or been
  pruned (a RELEASED wait whose run is still PENDING is the hand-over to the pool).
- report_backfills and their report_backfill_fires: COMPLETED, CANCELLED or FAILED backfills
  that finished before the cutoff.
- report_late_fires: fires judged late before the cutoff (the deadline watch only judges the
  current fire of each schedule, so an old claim row guards nothing any more).
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from reporthubd import domain
from reporthubd.store import schema
from reporthubd.store.database import Store

_n = schema.notices
_w = schema.waits
_e = schema.executions
_b = schema.backfills
_bf = schema.backfill_fires
_lf = schema.late_fires

SETTLED_NOTICES = ("SENT", "FAILED")
SETTLED_WAITS = ("RELEASED", "EXPIRED")
SETTLED_BACKFILLS = ("COMPLETED", "CANCELLED", "FAILED")


async def prune_ledgers(store: Store, *, before: datetime, batch_size: int = 500) -> dict[str, int]:
    """Delete the settled ledger rows older than `before`; returns the counts by kind."""
    terminal = [s.value for s in domain.ExecutionStatus if s.is_terminal]
    live_run = sa.exists().where(_e.c.id == _w.c.execution_id, _e.c.status.not_in(terminal))
    return {
        "notices_pruned": await _prune(
            store,
            _n,
            (_n.c.id,),
            sa.and_(_n.c.created_at < before, _n.c.status.in_(SETTLED_NOTICES)),
            order_by=_n.c.created_at,
            batch_size=batch_size,
        ),
        "waits_pruned": await _prune(
            store,
            _w,
            (_w.c.execution_id,),
            sa.and_(
                sa.func.coalesce(_w.c.decided_at, _w.c.created_at) < before,
                _w.c.status.in_(SETTLED_WAITS),
                ~live_run,
            ),
            order_by=_w.c.created_at,
            batch_size=batch_size,
        ),
        "backfills_pruned": await _prune_backfills(store, before=before, batch_size=batch_size),
        "late_fires_pruned": await _prune(
            store,
            _lf,
            (_lf.c.schedule_id, _lf.c.scheduled_for),
            _lf.c.created_at < before,
            order_by=_lf.c.created_at,
            batch_size=batch_size,
        ),
    }


async def _prune(
    store: Store,
    table: sa.Table,
    key: tuple[sa.Column[object], ...],
    where: sa.ColumnElement[bool],
    *,
    order_by: sa.Column[object],
    batch_size: int,
) -> int:
    """Delete the rows matching `where`, oldest first, a batch of keys per transaction."""
    total = 0
    while True:
        async with store.engine.begin() as conn:
            query = sa.select(*key).where(where).order_by(order_by).limit(batch_size)
            rows = (await conn.execute(query)).all()
            if not rows:
                return total
            if len(key) == 1:
                await conn.execute(sa.delete(table).where(key[0].in_([r[0] for r in rows])))
            else:
                await conn.execute(
                    sa.delete(table).where(sa.tuple_(*key).in_([tuple(r) for r in rows]))
                )
        total += len(rows)
        if len(rows) < batch_size:
            return total


async def _prune_backfills(store: Store, *, before: datetime, batch_size: int) -> int:
    """Finished backfills with their fires: the fires in batches (a backfill of a year of
    minutes holds 525,600), then the backfill row."""
    total = 0
    while True:
        async with store.engine.connect() as conn:
            ids = list(
                (
                    await conn.execute(
                        sa.select(_b.c.id)
                        .where(_b.c.finished_at < before, _b.c.status.in_(SETTLED_BACKFILLS))
                        .order_by(_b.c.finished_at)
                        .limit(batch_size)
                    )
                ).scalars()
            )
            await conn.rollback()
        if not ids:
            return total
        for backfill_id in ids:
            await _prune(
                store,
                _bf,
                (_bf.c.backfill_id, _bf.c.scheduled_for),
                _bf.c.backfill_id == backfill_id,
                order_by=_bf.c.scheduled_for,
                batch_size=batch_size,
            )
            async with store.engine.begin() as conn:
                await conn.execute(sa.delete(_b).where(_b.c.id == backfill_id))
        total += len(ids)
        if len(ids) < batch_size:
            return total
