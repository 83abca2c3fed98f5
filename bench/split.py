"""Split by key (issue 18 item 2): one report's query of N rows split into K files, one per branch
(`format_options.split_by`, a driver of K audiences), against the single-file export of the same
query, the rows ordered by branch or not.

usage: .venv/bin/python bench/split.py [--rows 1000000] [--keys 1000] [--rounds 1] [--slots 4]

The floor, measured in the same run: the single file's run, then in the same process the least
store work K children need whatever their files (`floor_children`: claimed, started and finished
with a file record through the engine's Lifecycle, each write conditional: the fencing of a run
without deliveries). A split cannot cost less than its floor on this design; its ratio to the
single file says whether the target is reachable.

The query runs on the running MariaDB (a fresh source database, dropped afterwards); the store is
a fresh MariaDB database too. Each run is one Engine in its own process (peak RSS from os.wait4 is
the run's own) that triggers the report and waits for its end: for the split, the parent's one
pass over the query (rows spilled by key) and the K children that write and record their files
(no deliveries: the deliveries' cost is bench/fanout.py's). Printed per run: wall (inside the
worker, from the trigger to the end; outside, the process), the one pass (from the trigger to
the spill's end: the driver read, the query and the rows cut by key; for a single file, its whole
run), peak RSS, the most descriptors the process held, and the ratios of each split to the single
file of the same order.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import glob
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

_spec = importlib.util.spec_from_file_location(
    "bench_formats", Path(__file__).with_name("formats.py")
)
assert _spec is not None and _spec.loader is not None
fx = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fx)

COLUMNS = "id, branch, amount, booked, note"
ORDER = {"unordered": "id", "ordered": "branch, id"}


def fill_sql(rows: int, keys: int) -> list[str]:
    return [
        "CREATE TABLE ledger (id INT PRIMARY KEY, branch VARCHAR(8), amount DECIMAL(12,2), "
        "booked DATE, note VARCHAR(40), KEY (branch, id))",
        "CREATE TABLE branches (code VARCHAR(8) PRIMARY KEY, manager VARCHAR(60))",
        f"INSERT INTO ledger SELECT seq, CONCAT('B', LPAD(seq MOD {keys}, 4, '0')), "
        "(seq * 37 MOD 100000) / 100, DATE '2026-01-01' + INTERVAL (seq MOD 330) DAY, "
        "IF(seq MOD 3 = 0, NULL, CONCAT('entry \"', seq, '\", ok')) "
        f"FROM seq_1_to_{rows}",
        "INSERT INTO branches SELECT CONCAT('B', LPAD(seq, 4, '0')), "
        f"CONCAT('m', seq, '@example.com') FROM seq_0_to_{keys - 1}",
    ]


async def floor_children(engine: Any, parent: Any, keys: int, slots: int) -> None:
    """The least store work `keys` children need, whatever their files: each claimed (the
    insert of its execution row, a window of 64 per statement as engine/fanout.py claims
    them), started (PENDING -> RUNNING, conditional) and finished with its file's record
    (RUNNING -> COMPLETED, conditional on the run still being this node's: the fencing of a
    run without deliveries), through the engine's own Lifecycle, `slots` at a time. No file,
    no spill, no pipeline."""
    from reporthubd.domain import ExecutionStatus
    from reporthubd.store import audiences as audience_rows
    from reporthubd.timeutil import utcnow

    lifecycle = engine.lifecycle
    slot = asyncio.Semaphore(slots)

    async def child(execution: Any) -> None:
        async with slot:
            assert await lifecycle.start(execution)
            lifecycle.ownership.hold(execution.id)
            record = {"file_name": f"st_{execution.id}.csv", "file_path": "/dev/null"}
            record |= {"file_size": 0, "file_sha256": "0" * 64}
            finished = await lifecycle.finish(
                execution, ExecutionStatus.COMPLETED, row_count=0, file=record
            )
            assert finished

    audiences = [
        audience_rows.Audience(burst_id=parent.id, key=f"B{n:04d}", seq=n) for n in range(keys)
    ]
    running = []
    for start in range(0, keys, 64):
        batch = audiences[start : start + 64]
        now = utcnow()
        claims = await audience_rows.claim_children(
            engine.store, parent, batch, parameters={}, node_id=engine.node_id, created_at=now
        )
        assert len(claims.inserted) == len(batch)
        for audience in batch:
            execution = audience_rows.child_execution(
                parent, audience, parameters={}, node_id=engine.node_id, created_at=now
            )
            running.append(asyncio.create_task(child(execution)))
    await asyncio.gather(*running)


async def worker(
    config_id: int, store_url: str, workspace: str, slots: int, floor_keys: int = 0
) -> None:
    from reporthubd.config import Settings
    from reporthubd.domain import TriggerType
    from reporthubd.engine import Engine
    from reporthubd.store import executions
    from reporthubd.store.database import Store

    settings = Settings.model_validate(
        {
            "store": {"url": store_url},
            "execution": {"workspace": workspace, "max_concurrent_executions": slots},
        }
    )
    store = Store(settings.store)
    await store.start()
    trips = _count_round_trips(store_url)
    engine = Engine(settings, store, node_id=f"bench-{os.getpid()}")
    await engine.start()
    peak = len(os.listdir("/proc/self/fd"))
    passed: float | None = None
    passed_cpu: float | None = None
    headers = os.path.join(workspace, "*", "split", "header.pickle")

    async def watch() -> None:
        # The descriptors, and when the one pass ended (its spill's header appears).
        nonlocal peak, passed, passed_cpu
        while True:
            peak = max(peak, len(os.listdir("/proc/self/fd")))
            if passed is None and glob.glob(headers):
                passed = time.perf_counter() - started
                passed_cpu = time.process_time() - cpu_started
            await asyncio.sleep(0.02)

    watcher = asyncio.create_task(watch(), name="fd-watch")
    started = time.perf_counter()
    cpu_started = time.process_time()
    try:
        execution_id = await engine.create_and_submit(config_id, trigger_type=TriggerType.MANUAL)
        task = engine.task(execution_id)
        assert task is not None
        await task
        done = await executions.get_execution(store, execution_id)
        if floor_keys:  # the floor: the single file, then the children's least store work
            passed = time.perf_counter() - started
            passed_cpu = time.process_time() - cpu_started
            assert done is not None
            await floor_children(engine, done, floor_keys, slots)
        seconds = time.perf_counter() - started
        cpu_seconds = time.process_time() - cpu_started
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await engine.stop()
        await store.stop()
    assert done is not None
    statements = os.environ.get("SPLIT_BENCH_STATEMENTS")
    if statements:  # the store's round trips by statement: SPLIT_BENCH_STATEMENTS=/tmp/trips
        lines = "".join(f"{n:8d}  {text}\n" for text, n in trips.most_common(40))
        await asyncio.to_thread(Path(f"{statements}.{config_id}").write_text, lines)
    print(
        json.dumps(
            {
                "t_s": seconds,
                "status": done.status.value,
                "rows": done.row_count,
                "message": done.error_message,
                "fd_peak": peak,
                "pass_s": passed,
                "cpu_s": cpu_seconds,
                "pass_cpu_s": passed_cpu,
                "trips": sum(trips.values()),
            }
        )
    )


def _count_round_trips(store_url: str) -> collections.Counter[str]:
    """Every command the store's connections send (aiomysql's, below SQLAlchemy: statements,
    COMMITs, autocommit switches), by the statement's first words; the source's are not
    counted."""
    import aiomysql.connection
    from sqlalchemy.engine import make_url

    database = make_url(store_url).database
    counted: collections.Counter[str] = collections.Counter()
    original = aiomysql.connection.Connection._execute_command

    async def execute_command(self: Any, command: int, sql: Any) -> Any:
        if self._db == database:
            text = sql.decode(errors="replace") if isinstance(sql, bytes) else str(sql)
            counted[" ".join(text.split()[:4])[:60]] += 1
        return await original(self, command, sql)

    aiomysql.connection.Connection._execute_command = execute_command  # type: ignore[method-assign]
    return counted


async def prepare(args: argparse.Namespace, workdir: Path) -> tuple[str, str, dict[str, int]]:
    import aiomysql
    import sqlalchemy as sa

    from reporthubd.config import StoreSettings
    from reporthubd.store import migrate, schema
    from reporthubd.store.database import Store
    from tests import servers

    store_db = servers.create_database("mariadb", workdir)
    source_name = f"rh_split_src_{os.getpid()}"
    conn = await aiomysql.connect(
        host=servers.MARIADB_HOST,
        port=servers.MARIADB_PORT,
        user="root",
        password="",
        autocommit=True,
    )
    async with conn.cursor() as cursor:
        await cursor.execute(f"CREATE DATABASE `{source_name}`")
        await cursor.execute(f"USE `{source_name}`")
        for statement in fill_sql(args.rows, args.keys):
            await cursor.execute(statement)
    conn.close()
    store = Store(StoreSettings(url=store_db.url))
    await store.start()
    configs: dict[str, int] = {}
    try:
        await migrate.upgrade(store)
        source = {
            "host": servers.MARIADB_HOST,
            "port": servers.MARIADB_PORT,
            "username": "root",
            "password": "",
            "database": source_name,
        }
        async with store.engine.begin() as conn2:
            ds = (
                await conn2.execute(
                    sa.insert(schema.datasources).values(
                        name="src", type="mysql", connection_config=source
                    )
                )
            ).inserted_primary_key[0]
            for order, by in ORDER.items():
                sql = f"SELECT {COLUMNS} FROM ledger ORDER BY {by}"
                for method in ("single file", "split"):
                    options = {"split_by": "branch"} if method == "split" else {}
                    config = (
                        await conn2.execute(
                            sa.insert(schema.configs).values(
                                name=f"{method} {order}",
                                datasource_id=ds,
                                query_text=sql,
                                output_format="csv",
                                format_options=options,
                            )
                        )
                    ).inserted_primary_key[0]
                    configs[f"{method} {order}"] = int(config)
                    if method == "split":
                        await conn2.execute(
                            sa.insert(schema.audience_drivers).values(
                                config_id=config,
                                datasource_id=ds,
                                query_text="SELECT code AS branch, manager AS recipients, "
                                "CONCAT('st_', code) AS file_name FROM branches ORDER BY code",
                                key_column="branch",
                            )
                        )
    finally:
        await store.stop()
    return store_db.url, source_name, configs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--worker", nargs=3)
    parser.add_argument("--floor-keys", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        config_id, store_url, workspace = args.worker
        profile = os.environ.get("SPLIT_BENCH_PROFILE")
        if profile:  # where the time goes: SPLIT_BENCH_PROFILE=/tmp/split.prof
            import cProfile

            cProfile.runctx(
                "asyncio.run(worker(int(config_id), store_url, workspace, args.slots, "
                "args.floor_keys))",
                globals(),
                {**locals(), "worker": worker},
                f"{profile}.{config_id}",
            )
            return
        asyncio.run(worker(int(config_id), store_url, workspace, args.slots, args.floor_keys))
        return
    from tests import servers

    workdir = Path(tempfile.mkdtemp(prefix="rh-split-"))
    print(f"filling {args.rows:,} rows over {args.keys:,} branches ...", flush=True)
    store_url, source_name, configs = asyncio.run(prepare(args, workdir))
    # Per order: the single file, the split, and the floor (the single file's run, then the
    # least store work of its children: floor_children).
    runs: dict[str, tuple[int, int]] = {}
    for order in ORDER:
        single = configs[f"single file {order}"]
        runs |= {
            f"single file {order}": (single, 0),
            f"split {order}": (configs[f"split {order}"], 0),
            f"floor {order}": (single, args.keys),
        }
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in runs}
    try:
        for r in range(args.rounds):
            for name, (config_id, floor_keys) in runs.items():
                workspace = workdir / f"ws-{r}-{len(results[name])}-{name.replace(' ', '-')}"
                cmd = [sys.executable, __file__, "--slots", str(args.slots), "--worker"]
                cmd += [str(config_id), store_url, str(workspace), "--floor-keys", str(floor_keys)]
                x = fx.run_measured(cmd)
                if x["rc"] != 0 or x["inner"].get("status") != "COMPLETED":
                    raise SystemExit(f"{name} failed: {x['inner']} {x['stderr']}")
                results[name].append(x)
                pass_s = x["inner"]["pass_s"]
                print(
                    f"  r{r} {name:22s} run={x['inner']['t_s']:.2f}s "
                    f"one pass={pass_s if pass_s is None else round(pass_s, 2)}s "
                    f"process={x['wall_s']:.2f}s "
                    f"cpu={x['cpu_s']:.2f}s rss={x['rss_mb']:.0f}MB fds={x['inner']['fd_peak']} "
                    f"({x['inner']['message'] or 'one file'})",
                    flush=True,
                )
    finally:
        servers._mariadb_admin(f"DROP DATABASE IF EXISTS `{source_name}`")
    print(f"\n### split: {args.rows:,} rows into {args.keys:,} files, {args.rounds} round(s)\n")
    print(
        "| method | run s | wall ratio | run CPU s | CPU ratio | one pass s | one pass CPU s "
        "| pass CPU ratio | store round trips per file | peak RSS MB | RSS ratio | peak fds |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")

    def ratio(xs: list[dict[str, Any]], base: list[dict[str, Any]], key: str) -> str:
        values = [x["inner"][key] / b["inner"][key] for x, b in zip(xs, base, strict=True)]
        return f"{statistics.median(values):.2f}"

    for name, xs in results.items():
        base = results[f"single file {name.split()[-1]}"]
        for x in xs:  # a single file's one pass is its whole run
            x["inner"]["pass_s"] = x["inner"]["pass_s"] or x["inner"]["t_s"]
            x["inner"]["pass_cpu_s"] = x["inner"]["pass_cpu_s"] or x["inner"]["cpu_s"]
        rss = [x["rss_mb"] / b["rss_mb"] for x, b in zip(xs, base, strict=True)]
        pass_cpu = [
            x["inner"]["pass_cpu_s"] / b["inner"]["cpu_s"] for x, b in zip(xs, base, strict=True)
        ]
        print(
            f"| {name} | {fx.med([x['inner']['t_s'] for x in xs])} | {ratio(xs, base, 't_s')} | "
            f"{fx.med([x['inner']['cpu_s'] for x in xs])} | {ratio(xs, base, 'cpu_s')} | "
            f"{fx.med([x['inner']['pass_s'] for x in xs])} | "
            f"{fx.med([x['inner']['pass_cpu_s'] for x in xs])} | "
            f"{statistics.median(pass_cpu):.2f} | "
            f"{statistics.median(x['inner']['trips'] for x in xs) / args.keys:.1f} | "
            f"{fx.med([x['rss_mb'] for x in xs], '{:.0f}')} | {statistics.median(rss):.2f} | "
            f"{max(x['inner']['fd_peak'] for x in xs)} |"
        )


if __name__ == "__main__":
    main()
