"""Conditional alerts' state in the store (revision 0014): each report's last evaluated truth and
last delivered file (`report_alert_states`, one row per report), so on_transition and on_change
decide alike on every node and after a restart; and who a "resolved" notice reaches (where the
alert went: `alert_audience`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from reporthubd.store import schema
from reporthubd.store.database import Store
from reporthubd.timeutil import utcnow

_a = schema.alert_states


@dataclass(frozen=True, kw_only=True)
class AlertState:
    last_truth: bool | None = None
    last_execution_id: str | None = None
    delivered_sha256: str | None = None
    delivered_execution_id: str | None = None


async def state(store: Store, config_id: int) -> AlertState:
    async with store.engine.connect() as conn:
        row = (await conn.execute(sa.select(_a).where(_a.c.config_id == config_id))).first()
    if row is None:
        return AlertState()
    m = row._mapping
    truth = m["last_truth"]
    return AlertState(
        last_truth=None if truth is None else bool(truth),
        last_execution_id=m["last_execution_id"],
        delivered_sha256=m["delivered_sha256"],
        delivered_execution_id=m["delivered_execution_id"],
    )


async def transition(
    store: Store,
    config_id: int,
    *,
    previous: str | None,
    execution_id: str,
    truth: bool | None,
    claim_sha256: str | None = None,
) -> bool:
    """Move the state to this run's (its truth, when it had a condition; with `claim_sha256`,
    an on_change run to be sent, that file as the delivered one at once), only if it is still
    the state the run was judged on: `previous` is the `last_execution_id` read then (None: no
    state yet). A compare-and-set, so two runs finishing at once on two nodes cannot both
    decide from the same old state: the one that loses (False) reads the state again and
    decides anew (engine/alerting.py). Setting it again for the same run is allowed (True)."""
    values: dict[str, object] = {"last_execution_id": execution_id, "updated_at": utcnow()}
    if truth is not None:
        values["last_truth"] = truth
    if claim_sha256 is not None:
        values |= {"delivered_sha256": claim_sha256, "delivered_execution_id": execution_id}
    last = _a.c.last_execution_id
    held = sa.or_(last.is_(None) if previous is None else last == previous, last == execution_id)
    async with store.engine.begin() as conn:
        done = await conn.execute(
            sa.update(_a).where(_a.c.config_id == config_id, held).values(values)
        )
    if done.rowcount == 1:
        return True
    if previous is not None:
        return False
    try:
        async with store.engine.begin() as conn:
            await conn.execute(sa.insert(_a).values(config_id=config_id, **values))
    except sa.exc.IntegrityError:
        return False  # another run's state went in first: judge again on it
    return True


async def save_delivered(
    store: Store, config_id: int, *, execution_id: str, delivered_sha256: str
) -> None:
    """The file a delivery of `execution_id` took (on_change compares with it from now on).
    The run's transition() wrote the row before its deliveries ran."""
    async with store.engine.begin() as conn:
        await conn.execute(
            sa.update(_a)
            .where(_a.c.config_id == config_id)
            .values(
                delivered_sha256=delivered_sha256,
                delivered_execution_id=execution_id,
                updated_at=utcnow(),
            )
        )


async def release_delivered(
    store: Store,
    config_id: int,
    *,
    execution_id: str,
    previous: tuple[str | None, str | None],
) -> None:
    """Give back the delivered file `execution_id` claimed (no delivery took it): the state's
    previous (sha256, execution id) again, unless another run's file is recorded since."""
    sha, previous_execution = previous
    async with store.engine.begin() as conn:
        await conn.execute(
            sa.update(_a)
            .where(_a.c.config_id == config_id, _a.c.delivered_execution_id == execution_id)
            .values(
                delivered_sha256=sha,
                delivered_execution_id=previous_execution,
                updated_at=utcnow(),
            )
        )


async def alert_audience(
    store: Store, config_id: int, *, before: datetime
) -> tuple[str | None, list[int]]:
    """Who a "resolved" notice reaches: where the alert went. (The id of the report's latest
    run recorded `deliver` that finished before `before`, the active deliveries that took its
    file: a SUCCESS, or a retry still pending, in its ledger.) When no such run or delivery is
    found (the alert run's deliveries all failed, or it is older than the ledger), every
    active delivery of the report, so that nobody who should hear is left out."""
    e, d, logs = schema.executions, schema.deliveries, schema.delivery_logs
    async with store.engine.connect() as conn:
        alert_run = (
            await conn.execute(
                sa.select(e.c.id)
                .where(
                    e.c.config_id == config_id,
                    e.c.alert_decision == "deliver",
                    e.c.finished_at < before,
                )
                .order_by(e.c.finished_at.desc(), e.c.id.desc())
                .limit(1)
            )
        ).scalar()
        active = sa.select(d.c.id).where(d.c.config_id == config_id, d.c.is_active == sa.true())
        took: list[int] = []
        if alert_run is not None:
            took = [
                int(row.delivery_id)
                for row in await conn.execute(
                    sa.select(logs.c.delivery_id)
                    .where(
                        logs.c.execution_id == alert_run,
                        logs.c.status.in_(("SUCCESS", "RETRYING")),
                        logs.c.delivery_id.in_(active.scalar_subquery()),
                    )
                    .distinct()
                    .order_by(logs.c.delivery_id)
                )
            ]
        if not took:
            took = [int(row.id) for row in await conn.execute(active.order_by(d.c.id))]
    return alert_run, took


async def report_alert(store: Store, config_id: int) -> tuple[str, object] | None:
    """(report name, its stored alert or None), or None for an unknown report."""
    c = schema.configs
    async with store.engine.connect() as conn:
        row = (
            await conn.execute(sa.select(c.c.name, c.c.alert).where(c.c.id == config_id))
        ).first()
    return None if row is None else (str(row.name), row.alert)
