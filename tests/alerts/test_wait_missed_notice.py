"""A run that waits past its deadline is a missed fire (issue 17 item 1 with issue 20's waits):
a schedule depends on a report that never runs; its wait deadline (+3 s) passes, `skip` records
the run SKIPPED (lifecycle transition wait_expired) and the notifier sends one `missed` notice,
with what the run waited for, to the rule's target (a webhook delivery row, a real aiohttp
receiver)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from reporthubd.store.database import Store
from tests.alerts.test_alerts_daemon import _notices, _webhook
from tests.deliverers import peers
from tests.engine.conftest import add_config, add_datasource, add_schedule
from tests.notify.helpers import notice_rows, wait_for
from tests.reliability.conftest import Daemon


async def test_a_wait_past_its_deadline_sends_one_missed_notice(
    tmp_path: Path, rstore: Store
) -> None:
    ops = peers.WebhookReceiver()
    await ops.start()
    daemon: Daemon | None = None
    try:
        source = await add_datasource(rstore, "sqlite", {"path": str(tmp_path / "data.db")})
        ops_report = await add_config(rstore, source, "SELECT 1 AS n", name="ops-channel")
        ops_hook = await _webhook(rstore, ops_report, ops.url)
        await add_config(rstore, source, "SELECT 1 AS n", name="upstream")
        rule = {"events": ["missed"], "notify": [f"delivery:{ops_hook}"]}
        report = await add_config(
            rstore, source, "SELECT 1 AS n", name="downstream", notify={"rules": [rule]}
        )
        fire = (datetime.now(UTC) + timedelta(seconds=6)).replace(microsecond=0)
        await add_schedule(
            rstore,
            report,
            f"{fire.second} {fire.minute} {fire.hour} * * *",
            timezone="UTC",
            depends_on=["upstream"],
            wait_deadline="+3s",
            wait_policy="skip",
        )
        daemon = Daemon(
            tmp_path,
            scheduler={"wait_check_max_seconds": 1.0},
            notifications={"poll_interval_seconds": 1.0},
        )
        await daemon.ready()
        await wait_for(lambda: _notices(ops), "the missed notice", timeout=60)
        (notice,) = _notices(ops)
        assert notice["event"] == "missed", notice
        assert "waited until" in notice["text"] and "upstream" in notice["text"], notice
        assert "downstream" in notice["subject"], notice

        async def sent() -> list[object] | None:
            rows = await notice_rows(rstore)
            return rows if rows and all(r.status == "SENT" for r in rows) else None

        (row,) = await wait_for(sent, "the notice SENT", timeout=30)
        assert row.event == "missed" and row.target == f"delivery:{ops_hook}", row
    finally:
        if daemon is not None:
            await daemon.close()
        await ops.stop()
