"""Conditional alerts' state in the store (revision 0014): each report's last evaluated truth and
last delivered file (`report_alert_states`, one row per report), so on_transition and on_change
decide alike on every node and after a restart; and who a "resolved" notice reaches.
"""

from __future__ import annotations

from dataclasses import dataclass

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


async def save(
    store: Store,
    config_id: int,
    *,
    execution_id: str,
    truth: bool | None,
    delivered_sha256: str | None,
) -> None:
    """The state after a run: its truth (when it had a condition) and, when it was delivered,
    its file's hash. One row per report: updated, or inserted the first time."""
    values: dict[str, object] = {"last_execution_id": execution_id, "updated_at": utcnow()}
    if truth is not None:
        values["last_truth"] = truth
    if delivered_sha256 is not None:
        values |= {"delivered_sha256": delivered_sha256, "delivered_execution_id": execution_id}
    for _ in range(3):
        async with store.engine.begin() as conn:
            done = await conn.execute(
                sa.update(_a).where(_a.c.config_id == config_id).values(values)
            )
            if done.rowcount:
                return
        try:
            async with store.engine.begin() as conn:
                await conn.execute(sa.insert(_a).values(config_id=config_id, **values))
            return
        except sa.exc.IntegrityError:
            continue  # another node inserted it meanwhile: update it
    raise RuntimeError(f"could not save the alert state of report {config_id}")


async def delivery_ids(store: Store, config_id: int) -> list[int]:
    """The report's active deliveries: who a "resolved" notice reaches (those who got the
    alert)."""
    d = schema.deliveries
    async with store.engine.connect() as conn:
        rows = await conn.execute(
            sa.select(d.c.id)
            .where(d.c.config_id == config_id, d.c.is_active == sa.true())
            .order_by(d.c.id)
        )
        return [int(r.id) for r in rows]


async def report_alert(store: Store, config_id: int) -> tuple[str, object] | None:
    """(report name, its stored alert or None), or None for an unknown report."""
    c = schema.configs
    async with store.engine.connect() as conn:
        row = (
            await conn.execute(sa.select(c.c.name, c.c.alert).where(c.c.id == config_id))
        ).first()
    return None if row is None else (str(row.name), row.alert)
