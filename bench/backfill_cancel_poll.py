"""What a node's backfill intake costs each second once it also looks for runs of cancelled
backfills (issue 20: a cancelled backfill's started runs are cancelled by the node owning each,
store/backfill_fires.cancelled_runs), against the poll it already made (store/backfills.take's
candidates), over a store holding many finished backfills (COMPLETED and CANCELLED, every fire
settled: the steady state) and one backfill still RUNNING on this node with 4 runs going
(so the look-up reads past its first step).

    .venv/bin/python bench/backfill_cancel_poll.py [--backend sqlite|mariadb|postgresql]
        [--backfills 2000] [--fires 30] [--rounds 200]

Prints the median and p95 of each query in ms, and the ratio to `take`, measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reporthubd.config import StoreSettings
from reporthubd.ids import new_id
from reporthubd.store import backfill_fires, backfills, migrate, schema
from reporthubd.store.database import Store
from tests import servers


async def _seed(store: Store, count: int, per: int) -> None:
    async with store.engine.begin() as conn:
        ds = await conn.execute(
            sa.insert(schema.datasources).values(
                name="src", type="sqlite", connection_config={"path": ":memory:"}
            )
        )
        config = await conn.execute(
            sa.insert(schema.configs).values(
                name="r",
                datasource_id=ds.inserted_primary_key[0],
                query_text="SELECT 1",
                output_format="csv",
            )
        )
        config_id = int(config.inserted_primary_key[0])
        sched = await conn.execute(
            sa.insert(schema.schedules).values(
                config_id=config_id, cron_expression="0 * * * *", is_active=False
            )
        )
        schedule_id = int(sched.inserted_primary_key[0])
    start = datetime(2020, 1, 1, tzinfo=UTC)
    now = datetime.now(UTC)
    for b in range(count + 1):
        # the last one is still RUNNING on node-b, with its 4 runs going
        status = "RUNNING" if b == count else "CANCELLED" if b % 2 else "COMPLETED"
        backfill_id = new_id()
        base = start + timedelta(hours=b * per)
        runs, fires = [], []
        for f in range(per):
            when = base + timedelta(hours=f)
            execution_id = new_id()
            final = "CANCELLED" if status == "CANCELLED" and f >= per - 2 else "COMPLETED"
            if status == "RUNNING":
                final = "RUNNING" if f < 4 else "PENDING"
            runs.append(
                {
                    "id": execution_id,
                    "config_id": config_id,
                    "schedule_id": schedule_id,
                    "trigger_type": "backfill",
                    "scheduled_for": when,
                    "status": final,
                    "node_id": "node-b",
                    "attempt": 0,
                    "created_at": now,
                }
            )
            fires.append(
                {
                    "backfill_id": backfill_id,
                    "scheduled_for": when,
                    "status": {"RUNNING": "STARTED"}.get(final, final),
                    "attempt": 0,
                    "execution_id": execution_id,
                    "note": final,
                }
            )
        async with store.engine.begin() as conn:
            await conn.execute(
                sa.insert(schema.backfills).values(
                    id=backfill_id,
                    schedule_id=schedule_id,
                    config_id=config_id,
                    range_from=base,
                    range_to=base + timedelta(hours=per),
                    reprocess="none",
                    deliver=True,
                    concurrency=2,
                    status=status,
                    total=per,
                    cancelled_by="bench" if status == "CANCELLED" else None,
                    node_id="node-b",
                    lease_until=now + timedelta(days=1) if status == "RUNNING" else None,
                    created_at=now,
                    updated_at=now,
                    finished_at=None if status == "RUNNING" else now,
                )
            )
            if status == "RUNNING":  # its fires not yet claimed have no run
                runs = [r for r in runs if r["status"] == "RUNNING"]
                for fire in fires[4:]:
                    fire.update(attempt=None, execution_id=None)
            await conn.execute(sa.insert(schema.executions), runs)
            await conn.execute(sa.insert(schema.backfill_fires), fires)


async def _time(call: object, rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        await call()  # type: ignore[operator]
        out.append((time.perf_counter() - t0) * 1000)
    return out


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", default="sqlite", choices=servers.BACKENDS)
    parser.add_argument("--backfills", type=int, default=2000)
    parser.add_argument("--fires", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        database = servers.create_database(args.backend, Path(tmp))
        store = Store(StoreSettings(url=database.url))
        await store.start()
        try:
            await migrate.upgrade(store)
            t0 = time.perf_counter()
            await _seed(store, args.backfills, args.fires)
            print(
                f"{args.backend}: {args.backfills} finished backfills x {args.fires} fires "
                f"seeded in {time.perf_counter() - t0:.1f} s"
            )

            async def take() -> None:
                await backfills.take(store, node_id="node-b", lease_seconds=30)

            async def cancelled() -> None:
                assert await backfill_fires.cancelled_runs(store, node_id="node-b") == []

            async def idle() -> None:  # a node that runs no backfill run now
                assert await backfill_fires.cancelled_runs(store, node_id="node-c") == []

            await _time(take, 10)
            await _time(cancelled, 10)
            figures = {"take": await _time(take, args.rounds)}
            figures["cancelled_runs"] = await _time(cancelled, args.rounds)
            figures["  idle node"] = await _time(idle, args.rounds)
            base = statistics.median(figures["take"])
            print(f"{'query':<16} {'median ms':>10} {'p95 ms':>8} {'x take':>7}")
            for name, values in figures.items():
                values.sort()
                p95 = values[int(len(values) * 0.95) - 1]
                median = statistics.median(values)
                print(f"{name:<16} {median:>10.2f} {p95:>8.2f} {median / base:>7.2f}")
        finally:
            await store.stop()
            database.drop()


if __name__ == "__main__":
    asyncio.run(main())
