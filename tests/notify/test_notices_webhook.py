"""A notice through another delivery method (issue 17): a report's webhook delivery is refused
for good (HTTP 400), so the run ends FAILED with its delivery given up. Its rule sends
`failed` and `retries_exhausted` to `delivery:ID`, a webhook delivery row of an operations
report, received by a real aiohttp server: two notices arrive there, each as a `report.notice`
document carrying the notice's words, with an Idempotency-Key of its own."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from reporthubd.store import schema
from reporthubd.store.database import Store
from tests.deliverers import peers
from tests.engine.conftest import add_config, add_datasource
from tests.notify.helpers import fix_data, notice_rows, wait_for
from tests.reliability.conftest import Daemon


async def _webhook(store: Store, config_id: int, url: str) -> int:
    async with store.engine.begin() as conn:
        inserted = await conn.execute(
            sa.insert(schema.deliveries).values(
                config_id=config_id,
                name=f"hook-{config_id}",
                method="webhook",
                delivery_config={"url": url},
                max_retry=0,
            )
        )
    return int(inserted.inserted_primary_key[0])


async def test_failed_and_given_up_delivery_notices_through_a_webhook_row(
    tmp_path: Path, rstore: Store
) -> None:
    refusing, ops = peers.WebhookReceiver(), peers.WebhookReceiver()
    refusing.answers = [(400, {})] * 5
    await refusing.start()
    await ops.start()
    daemon: Daemon | None = None
    try:
        fix_data(tmp_path / "data.db")
        source = await add_datasource(rstore, "sqlite", {"path": str(tmp_path / "data.db")})
        ops_report = await add_config(rstore, source, "SELECT 1 AS n", name="ops-channel")
        ops_hook = await _webhook(rstore, ops_report, ops.url)
        rule = {"events": ["failed", "retries_exhausted"], "notify": [f"delivery:{ops_hook}"]}
        report = await add_config(
            rstore, source, "SELECT 1 AS n", name="numbers", notify={"rules": [rule]}
        )
        report_hook = await _webhook(rstore, report, refusing.url)
        daemon = Daemon(tmp_path, notifications={"poll_interval_seconds": 1.0})
        await daemon.ready()
        run = await daemon.execute(report)
        done = await daemon.wait_status(run)
        assert done["status"] == "FAILED", done
        await wait_for(lambda: len(ops.accepted) >= 2, "two notices at the ops webhook")
        documents = {hit.json["notice"]["event"]: hit for hit in ops.accepted}
        assert set(documents) == {"failed", "retries_exhausted"}, documents
        for event, hit in documents.items():
            assert hit.headers["X-Reporthub-Event"] == "report.notice", hit.headers
            notice = hit.json["notice"]
            assert run in notice["text"] and "numbers" in notice["subject"], notice
            assert hit.headers["Idempotency-Key"].startswith("notice:"), hit.headers
            assert event in hit.json["notice"]["event"]
        given_up = documents["retries_exhausted"].json["notice"]["text"]
        assert f"delivery {report_hook}" in given_up and "400" in given_up, given_up
        rows = await wait_for(lambda: _sent(rstore), "both notices SENT", timeout=30)
        assert {(row.event, row.target) for row in rows} == {
            ("failed", f"delivery:{ops_hook}"),
            ("retries_exhausted", f"delivery:{ops_hook}"),
        }
        assert len(refusing.hits) == 1  # the report's own delivery, once: no notice went there
    finally:
        if daemon is not None:
            await daemon.close()
        await refusing.stop()
        await ops.stop()


async def _sent(store: Store) -> list[object] | None:
    rows = await notice_rows(store)
    return rows if len(rows) == 2 and all(r.status == "SENT" for r in rows) else None
