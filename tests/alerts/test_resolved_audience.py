"""Where an alert's "resolved" notice goes (issue 17, item 2: on_transition sends when the
condition turns true, through the report's deliveries, and one "resolved" notice when it turns
false): where the alert went, on every store backend.

- The report's deliveries that took the run that turned it true get it (a SUCCESS in that run's
  ledger): not one whose delivery of the alert failed for good, not one added since, not an
  inactive one, and not the notification rules' targets (the owner's email), which never got
  the alert.
- When none of the alert run's deliveries took it, every active delivery gets it.
- With `[notifications] enabled = false` the resolution still goes out (it is the alert's, like
  the alert's own send), while the rules' notices (a failed run) are silent.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from reporthubd import domain
from reporthubd.ids import new_id
from reporthubd.lifecycle.events import LifecycleEvent
from reporthubd.notify.notifier import Notifier
from reporthubd.notify.settings import NotificationSettings
from reporthubd.store import notices, schema
from reporthubd.store.database import Store
from tests.engine.conftest import add_config, add_datasource, add_delivery

T0 = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
ALERT = {
    "mode": "on_transition",
    "condition": {"any_row": {"column": "status", "op": "==", "value": "error"}},
}
RULES = {"owners": ["owner@example.com"], "rules": [{"events": ["failed"], "notify": ["owners"]}]}


async def _run(
    store: Store, config_id: int, minute: int, *, decision: str | None, status: str = "COMPLETED"
) -> str:
    execution_id = new_id()
    at = T0 + timedelta(minutes=minute)
    async with store.engine.begin() as conn:
        await conn.execute(
            sa.insert(schema.executions).values(
                id=execution_id,
                config_id=config_id,
                trigger_type="manual",
                status=status,
                started_at=at,
                finished_at=at + timedelta(seconds=5),
                created_at=at,
                alert_decision=decision,
                alert_reason="on_transition: any row status == 'error' turned false"
                if decision == "resolved"
                else None,
                error_message="boom" if status == "FAILED" else None,
            )
        )
    return execution_id


async def _log(store: Store, execution_id: str, delivery_id: int, status: str) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(
            sa.insert(schema.delivery_logs).values(
                execution_id=execution_id,
                delivery_id=delivery_id,
                attempt=1,
                status=status,
                started_at=T0,
                finished_at=T0,
            )
        )


async def _delivery(store: Store, config_id: int, *, active: bool = True) -> int:
    delivery_id = await add_delivery(store, config_id)
    if not active:
        async with store.engine.begin() as conn:
            await conn.execute(
                sa.update(schema.deliveries)
                .where(schema.deliveries.c.id == delivery_id)
                .values(is_active=False)
            )
    return delivery_id


def _notifier(store: Store, *, enabled: bool = True) -> Notifier:
    return Notifier(
        NotificationSettings(enabled=enabled, default_rule={}),
        store,
        node_id="node-a",
        link_base="http://console",
    )


async def _targets(store: Store, config_id: int, event: str = "resolved") -> set[str]:
    return {n.target for n in await notices.recent(store, config_id=config_id) if n.event == event}


async def test_the_resolution_goes_where_the_alert_went(store: Store) -> None:
    source = await add_datasource(store, "sqlite", {"path": "/tmp/none.db"})
    config_id = await add_config(store, source, "SELECT 1", alert=ALERT, notify=RULES)
    took, refused, inactive = (
        await _delivery(store, config_id),
        await _delivery(store, config_id),
        await _delivery(store, config_id, active=False),
    )
    alert_run = await _run(store, config_id, 0, decision="deliver")
    await _log(store, alert_run, took, "SUCCESS")
    await _log(store, alert_run, refused, "FAILED")
    await _log(store, alert_run, inactive, "SUCCESS")
    added_since = await _delivery(store, config_id)
    resolved_run = await _run(store, config_id, 10, decision="resolved")

    recorded = await _notifier(store).decide_run(resolved_run)
    assert len(recorded) == 1
    assert await _targets(store, config_id) == {f"delivery:{took}"}
    (notice,) = await notices.recent(store, config_id=config_id)
    assert notice.incident_key == f"alert:{resolved_run}"
    assert f"the alert was sent by run {alert_run}" in (notice.message or "")
    assert "turned false" in (notice.message or "")
    # Deciding it again (another node, the sweep) adds nothing.
    assert await _notifier(store).decide_run(resolved_run) == []
    assert f"delivery:{added_since}" not in await _targets(store, config_id)


async def test_with_no_delivery_that_took_the_alert_every_active_delivery_hears(
    store: Store,
) -> None:
    source = await add_datasource(store, "sqlite", {"path": "/tmp/none.db"})
    config_id = await add_config(store, source, "SELECT 1", alert=ALERT, notify=RULES)
    refused, silent = await _delivery(store, config_id), await _delivery(store, config_id)
    await _delivery(store, config_id, active=False)
    alert_run = await _run(store, config_id, 0, decision="deliver")
    await _log(store, alert_run, refused, "FAILED")
    resolved_run = await _run(store, config_id, 10, decision="resolved")
    await _notifier(store).decide_run(resolved_run)
    assert await _targets(store, config_id) == {f"delivery:{refused}", f"delivery:{silent}"}


async def test_notices_off_silence_the_rules_but_not_the_alerts_resolution(store: Store) -> None:
    source = await add_datasource(store, "sqlite", {"path": "/tmp/none.db"})
    config_id = await add_config(store, source, "SELECT 1", alert=ALERT, notify=RULES)
    took = await _delivery(store, config_id)
    alert_run = await _run(store, config_id, 0, decision="deliver")
    await _log(store, alert_run, took, "SUCCESS")
    resolved_run = await _run(store, config_id, 10, decision="resolved")
    failed_run = await _run(store, config_id, 20, decision=None, status="FAILED")

    notifier = _notifier(store, enabled=False)
    task = asyncio.create_task(notifier.run(), name="notice-decisions-test")
    try:
        for execution_id, status in ((resolved_run, "COMPLETED"), (failed_run, "FAILED")):
            notifier(
                LifecycleEvent(
                    execution_id=execution_id,
                    config_id=config_id,
                    schedule_id=None,
                    transition=domain.Transition.FINISHED,
                    old=domain.ExecutionStatus.RUNNING,
                    new=domain.ExecutionStatus(status),
                    reason=None,
                    node_id="node-a",
                    at=T0,
                )
            )
        await notifier.idle()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert await _targets(store, config_id) == {f"delivery:{took}"}
    assert await _targets(store, config_id, "failed") == set()  # the rule's, silenced
    # The same failed run with notices on: the rule's notice to the owner.
    await _notifier(store).decide_run(failed_run)
    assert await _targets(store, config_id, "failed") == {"email:owner@example.com"}
