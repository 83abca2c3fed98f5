"""Store outage (issue 10, item 2): the store's server is stopped for 60 seconds while schedules
fire and executions finish. The daemon stays up, /readyz says not ready, nothing crashes; when
the store returns, every execution and delivery record written during the outage is in the
store (journaled locally and flushed, store/journal.py), and the missed fires follow their
policies. A second case kills the daemon during the outage: the next start flushes the journal
before anything judges those executions lost.

The store is a private MariaDB (tests/private_servers.py) that these tests stop and start; the
reports query the shared PostgreSQL; deliveries go to a webhook receiver in the test."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import web

from reporthubd.config import StoreSettings
from reporthubd.store import migrate, schema
from reporthubd.store.database import Store
from tests.engine.conftest import Source, add_config, add_datasource, add_schedule
from tests.private_servers import PrivateMariaDB
from tests.reliability.conftest import Daemon, WebhookReceiver

pytestmark = [pytest.mark.background, pytest.mark.timeout(400)]

OUTAGE_SECONDS = 60.0
PERIOD = 5  # the schedules fire every 5 seconds
SLOW_RUNS = 6
ON_TIME = timedelta(seconds=5)  # reporthubd.scheduler.misfire.ON_TIME_SECONDS


class Receiver(WebhookReceiver):
    """A webhook receiver that counts every copy it gets, per Idempotency-Key."""

    def __init__(self) -> None:
        super().__init__()
        self.copies: Counter[str] = Counter()

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.copies[request.headers.get("Idempotency-Key", "")] += 1
        return web.Response(text="ok")


@pytest.fixture
def mariadb(tmp_path: Path) -> Iterator[PrivateMariaDB]:
    server = PrivateMariaDB(tmp_path / "mariadb")
    (tmp_path / "mariadb").mkdir()
    server.install()
    server.start()
    server.create_database()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def store(mariadb: PrivateMariaDB) -> AsyncIterator[Store]:
    store = Store(StoreSettings(url=mariadb.url, connect_timeout_seconds=2))
    await store.start()
    await migrate.upgrade(store)
    yield store
    await store.stop()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    await receiver.start()
    yield receiver
    await receiver.stop()


async def _slow_report(store: Store, pg_source: Source, receiver: Receiver, seconds: float) -> int:
    source = await add_datasource(store, "postgresql", pg_source.config)
    config = await add_config(
        store,
        source,
        f"SELECT g AS n, pg_sleep({seconds}) IS NULL AS slept FROM generate_series(1, 3) g",
    )
    async with store.engine.begin() as conn:
        await conn.execute(
            sa.insert(schema.deliveries).values(
                config_id=config,
                name="hook",
                method="webhook",
                delivery_config={"url": f"http://127.0.0.1:{receiver.port}/hook"},
                max_retry=3,
                retry_interval_minutes=1,
            )
        )
    return config


def _daemon(tmp_path: Path, mariadb: PrivateMariaDB) -> Daemon:
    return Daemon(
        tmp_path,
        store_url=mariadb.url,
        store={"connect_timeout_seconds": 2},
        scheduler={
            "node_id": "outage-node",
            "heartbeat_interval_seconds": 1,
            "node_lost_after_seconds": 10,
            "misfire_grace_seconds": 600,
        },
        execution={"max_concurrent_executions": 10, "retry_time_scale": 0.01},
    )


async def _probe(daemon: Daemon, path: str) -> int:
    try:
        status, _ = await asyncio.wait_for(daemon.request("GET", path), 10)
    except (TimeoutError, OSError):
        return 0
    return status


async def _wait_running(store: Store, execution_ids: list[str]) -> None:
    for _ in range(600):
        async with store.engine.connect() as conn:
            statuses = (
                await conn.execute(
                    sa.select(schema.executions.c.status).where(
                        schema.executions.c.id.in_(execution_ids)
                    )
                )
            ).scalars()
            if list(statuses) == ["RUNNING"] * len(execution_ids):
                return
        await asyncio.sleep(0.1)
    raise AssertionError("the slow runs never all ran")


async def _wait_flushed(daemon: Daemon) -> dict[str, Any]:
    for _ in range(1200):
        if daemon.process.proc.poll() is not None:
            raise AssertionError(f"daemon exited: {daemon.process.output()[-3000:]}")
        try:
            status, answer = await daemon.request("GET", "/readyz")
        except OSError:
            status, answer = 0, {}
        if status == 200 and answer["data"]["journal_pending"] == 0:
            return answer
        await asyncio.sleep(0.1)
    raise AssertionError(f"the journal never flushed: {daemon.process.output()[-3000:]}")


async def _rows(store: Store, **where: Any) -> list[Any]:
    table = schema.executions
    query = sa.select(table).order_by(table.c.scheduled_for, table.c.created_at)
    for key, value in where.items():
        query = query.where(table.c[key] == value)
    async with store.engine.connect() as conn:
        return list(await conn.execute(query))


async def _logs(store: Store, execution_ids: list[str]) -> list[Any]:
    logs = schema.delivery_logs
    async with store.engine.connect() as conn:
        return list(
            await conn.execute(sa.select(logs).where(logs.c.execution_id.in_(execution_ids)))
        )


def _show(rows: list[Any]) -> list[str]:
    return [
        f"{_aware(r.scheduled_for):%H:%M:%S} {r.status} {r.trigger_type} claimed+"
        f"{(_aware(r.created_at) - _aware(r.scheduled_for)).total_seconds():.1f}s "
        f"{(r.error_message or '')[:90]}"
        for r in rows
    ]


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def test_a_minute_without_the_store_loses_nothing(
    tmp_path: Path,
    mariadb: PrivateMariaDB,
    store: Store,
    receiver: Receiver,
    pg_source: Source,
) -> None:
    slow = await _slow_report(store, pg_source, receiver, seconds=8)
    quick_source = await add_datasource(store, "postgresql", pg_source.config)
    quick = await add_config(store, quick_source, "SELECT 1 AS n")
    cron = f"*/{PERIOD} * * * * *"
    policies = {
        policy: await add_schedule(
            store, quick, cron, misfire_policy=policy, misfire_grace_seconds=600
        )
        for policy in ("run_once", "skip", "run_all")
    }

    daemon = _daemon(tmp_path, mariadb)
    try:
        await daemon.ready()
        slow_runs = [await daemon.execute(slow) for _ in range(SLOW_RUNS)]
        await _wait_running(store, slow_runs)
        for _ in range(300):  # every schedule has fired on time at least once
            fired = {r.schedule_id for r in await _rows(store) if r.schedule_id is not None}
            if fired >= set(policies.values()):
                break
            await asyncio.sleep(0.1)
        await store.engine.dispose()

        down_at = datetime.now(UTC)
        await asyncio.to_thread(mariadb.stop)
        loop = asyncio.get_running_loop()
        up_after = loop.time() + OUTAGE_SECONDS
        readyz: list[int] = []
        healthz: list[int] = []
        while loop.time() < up_after:
            readyz.append(await _probe(daemon, "/readyz"))
            healthz.append(await _probe(daemon, "/healthz"))
            assert daemon.process.proc.poll() is None, daemon.process.output()[-3000:]
            await asyncio.sleep(1)
        # The slow runs finished during the outage, and their webhooks were called then.
        assert sorted(receiver.copies.values()) == [1] * SLOW_RUNS, (
            receiver.copies,
            daemon.process.output()[-6000:],
        )
        await asyncio.to_thread(mariadb.start)
        up_at = datetime.now(UTC)

        answer = await _wait_flushed(daemon)
        assert answer["data"] == {"store": "up", "journal_pending": 0}
        # Let the schedules fire on time again for a few periods after the catch-up.
        await asyncio.sleep(3 * PERIOD)
    finally:
        await daemon.close()
    assert daemon.process.proc.returncode == 0, daemon.process.output()[-3000:]

    # The daemon stayed up and said so: alive throughout, not ready during the outage.
    assert healthz and set(healthz) == {200}, healthz
    assert len(readyz) >= 10 and set(readyz[2:]) == {503}, readyz

    # Every record of the slow runs, written during the outage, is in the store.
    by_id = {row.id: row for row in await _rows(store, config_id=slow)}
    assert set(by_id) == set(slow_runs)
    for execution_id in slow_runs:
        row = by_id[execution_id]
        assert row.status == "COMPLETED", (row.status, row.error_message)
        assert row.row_count == 3 and row.file_name and row.file_sha256
        assert down_at < _aware(row.finished_at) < up_at, (row.finished_at, down_at, up_at)
    logs = await _logs(store, slow_runs)
    assert sorted(log.execution_id for log in logs) == sorted(slow_runs)
    assert {log.status for log in logs} == {"SUCCESS"}
    assert all(down_at < _aware(log.finished_at) < up_at for log in logs)
    assert sum(receiver.copies.values()) == SLOW_RUNS, receiver.copies  # nothing twice

    # The fires: one row per fire, none missing between the first and the last; the missed
    # ones as each policy promises, SKIPPED rows saying why.
    all_rows = await _rows(store)
    assert not [r for r in all_rows if (r.error_message or "").startswith("node lost")]
    for policy, schedule_id in policies.items():
        rows = [r for r in all_rows if r.schedule_id == schedule_id]
        fires = [_aware(r.scheduled_for) for r in rows]
        assert len(fires) == len(set(fires)), f"{policy}: a fire doubled"
        expected = (fires[-1] - fires[0]) // timedelta(seconds=PERIOD) + 1
        assert len(fires) == expected, f"{policy}: a fire is missing"
        assert fires[0] < down_at and fires[-1] > up_at
        skipped = [r for r in rows if r.status == "SKIPPED"]
        late_runs = [
            r
            for r in rows
            if r.status != "SKIPPED" and _aware(r.created_at) - _aware(r.scheduled_for) > ON_TIME
        ]
        shown = (policy, down_at, up_at, _show(rows))
        assert {r.status for r in rows} <= {"COMPLETED", "SKIPPED"}, shown
        for row in skipped:
            assert row.error_message.startswith("missed: store unavailable from"), shown
            # (after the store returns, the scheduler's next try comes within 10 s)
            assert down_at - ON_TIME < _aware(row.scheduled_for) < up_at + ON_TIME * 4, shown
        missed_fires = OUTAGE_SECONDS / PERIOD - 2
        if policy == "skip":
            assert len(skipped) >= missed_fires and late_runs == [], shown
            assert all("(misfire_policy skip)" in r.error_message for r in skipped), shown
        elif policy == "run_once":
            # One run stands for every missed fire: the most recent one, or the fire that was
            # due on time when the scheduler got the store back (misfire.py); the others are
            # SKIPPED, saying which run they were coalesced into.
            assert len(skipped) >= missed_fires - 1 and len(late_runs) <= 1, shown
            kept = {r.error_message.rsplit("coalesced into the run for ", 1)[-1] for r in skipped}
            assert len(kept) == 1, shown
            kept_at = datetime.fromisoformat(kept.pop().rstrip(")").replace("Z", "+00:00"))
            window = [r for r in rows if skipped[0].scheduled_for <= r.scheduled_for]
            window = [r for r in window if _aware(r.scheduled_for) <= kept_at]
            assert [r.status for r in window if r.status != "SKIPPED"] == ["COMPLETED"], shown
            assert _aware(window[-1].scheduled_for) == kept_at, shown
        else:
            assert skipped == [] and len(late_runs) >= missed_fires, shown


async def test_a_daemon_killed_during_the_outage_flushes_its_journal_when_it_starts_again(
    tmp_path: Path,
    mariadb: PrivateMariaDB,
    store: Store,
    receiver: Receiver,
    pg_source: Source,
) -> None:
    slow = await _slow_report(store, pg_source, receiver, seconds=3)
    daemon = _daemon(tmp_path, mariadb)
    try:
        await daemon.ready()
        runs = [await daemon.execute(slow) for _ in range(3)]
        await _wait_running(store, runs)
        await store.engine.dispose()
        await asyncio.to_thread(mariadb.stop)
        for _ in range(300):  # the runs finish and deliver while the store is down
            if sum(receiver.copies.values()) == len(runs):
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1)
        journal = tmp_path / "workspace" / ".store-journal.jsonl"
        assert journal.read_text().count('"op":"update_execution"') >= len(runs)
        daemon.process.signal(signal.SIGKILL)
        await asyncio.to_thread(daemon.process.wait, 30)
    finally:
        await daemon.close()
    await asyncio.to_thread(mariadb.start)

    again = _daemon(tmp_path, mariadb)
    try:
        await again.ready()
        await _wait_flushed(again)
        rows = {row.id: row for row in await _rows(store, config_id=slow)}
    finally:
        await again.close()
    assert {i: rows[i].status for i in runs} == dict.fromkeys(runs, "COMPLETED"), {
        i: (r.status, r.error_message) for i, r in rows.items()
    }
    assert all(rows[i].file_name and rows[i].row_count == 3 for i in runs)
    logs = await _logs(store, runs)
    assert sorted(log.execution_id for log in logs) == sorted(runs)
    assert {log.status for log in logs} == {"SUCCESS"}
    assert [row for row in rows.values() if row.id not in runs] == [], "nothing re-run"
    assert sorted(receiver.copies.values()) == [1] * len(runs), receiver.copies
    assert journal.read_text().strip() == ""
