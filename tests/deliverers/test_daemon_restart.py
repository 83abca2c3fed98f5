"""A real `reporthubd run` is SIGKILLed while a delivery retry is pending; after a restart the
retry happens once, at its time, and the execution settles."""

from __future__ import annotations

import asyncio
import signal
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

from reporthubd import domain
from reporthubd.deliverers.base import ProducedFile
from reporthubd.store import delivery_logs
from reporthubd.store.database import Store
from tests.daemon_process import DaemonProcess, write_config
from tests.deliverers import peers
from tests.deliverers.conftest import DeliverySpec, seed_report, settings_for

DS = domain.DeliveryStatus
ES = domain.ExecutionStatus
SCALE = 0.1  # a 1-minute retry interval waits about 6 seconds


async def _wait_ready(port: int, daemon: DaemonProcess) -> None:
    async def up() -> bool:
        if daemon.proc.poll() is not None:
            raise AssertionError(f"daemon exited:\n{daemon.output()[-3000:]}")
        try:
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"http://127.0.0.1:{port}/healthz") as answer,
            ):
                return answer.status == 200
        except aiohttp.ClientError:
            return False

    await peers.wait_until(up, timeout=60)


async def test_sigkill_with_a_pending_retry_then_restart_retries_once_at_its_time(
    sqlite_store: Store, small_file: ProducedFile, tmp_path: Path
) -> None:
    receiver = peers.WebhookReceiver()  # down until the daemon is killed
    spec = DeliverySpec(
        method="webhook", config={"url": receiver.url}, max_retry=3, retry_interval_minutes=1
    )
    report = await seed_report(
        sqlite_store,
        settings_for(sqlite_store),
        small_file,
        [spec],
        status=ES.FAILED,  # produced, not delivered yet: redeliver runs the delivery
    )
    config, port = write_config(
        tmp_path,
        sqlite_store.settings.url,
        execution={"retry_time_scale": SCALE},
        # The killed node's heartbeat goes stale long before the retry: the lost-execution sweep
        # must leave an execution with a pending retry to the ledger.
        scheduler={"heartbeat_interval_seconds": 1.0, "node_lost_after_seconds": 2.5},
    )

    first = DaemonProcess(config)
    try:
        await _wait_ready(port, first)
        url = f"http://127.0.0.1:{port}/api/execution/{report.execution_id}/redeliver"
        async with aiohttp.ClientSession() as http, http.post(url) as answer:
            body = await answer.json()
        assert answer.status == 200, body
        assert body["data"]["pending"] == 1 and body["data"]["status"] == "RUNNING"
        first.signal(signal.SIGKILL)
        first.wait(10)
    finally:
        first.stop()

    (pending,) = await delivery_logs.logs_for_execution(sqlite_store, report.execution_id)
    assert pending.status is DS.RETRYING and pending.next_retry_at is not None
    due = pending.next_retry_at
    assert due > datetime.now(UTC)  # killed before the retry was due

    await receiver.start()
    second = DaemonProcess(config)
    try:
        await _wait_ready(port, second)
        await peers.wait_until(lambda: len(receiver.hits) >= 1, timeout=60)

        async def settled() -> bool:
            return (await report.execution()).status is not ES.RUNNING

        await peers.wait_until(settled, timeout=30)
        await asyncio.sleep(1.0)  # give a duplicate every chance to show up
        second.signal(signal.SIGTERM)
        assert second.wait(30) == 0
    finally:
        second.stop()
        await receiver.stop()

    assert len(receiver.hits) == 1
    assert receiver.hits[0].at >= due.timestamp()  # at its time, not before
    rows = await delivery_logs.logs_for_execution(sqlite_store, report.execution_id)
    assert [(r.attempt, r.status, r.next_retry_at) for r in rows] == [
        (1, DS.RETRYING, None),
        (2, DS.SUCCESS, None),
    ]
    assert rows[1].started_at is not None and rows[1].started_at >= due
    assert (await report.execution()).status is ES.COMPLETED
