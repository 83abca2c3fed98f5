"""Fan-out throughput of a data-driven run (issue 18): audiences per second and store round trips
per audience.

One in-process Engine with the real delivery ledger over a MariaDB store (a fresh database on the
running server, dropped afterwards); the report's query and its driver on a MariaDB source
database; each audience's file delivered by webhook (multipart) to a local aiohttp receiver.
Round trips are the commands the store's connections send (counted below SQLAlchemy, every
COMMIT, ROLLBACK and SET included: since the run's writes go to the driver connection on MariaDB,
store/executions.py, SQLAlchemy's `before_cursor_execute`, counted too, no longer sees them all);
the parent's driver read and claims are counted apart.

Baseline, measured in the same run: the same number of plain runs of the same report (one per
branch, triggered one by one through `create_and_submit` with the branch as parameter, all in
flight at once), which is what a team without bursting would script. The ratio is bursting's
wall time against it.

    .venv/bin/python bench/fanout.py                     # 10,000 audiences (~ a few minutes)
    .venv/bin/python bench/fanout.py --audiences 2000 --baseline 2000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import resource
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from reporthubd.config import Settings
from reporthubd.domain import TriggerType
from reporthubd.engine import Engine
from reporthubd.engine.ledger import DeliveryLedger
from reporthubd.store import audiences as audience_rows
from reporthubd.store import migrate, schema
from reporthubd.store.database import Store
from tests import servers


class Receiver:
    def __init__(self) -> None:
        self.keys: Counter[str] = Counter()
        self.runner: web.AppRunner | None = None
        self.port = servers.free_port()

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.keys[request.headers.get("Idempotency-Key", "")] += 1
        return web.Response(text="ok")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()


async def source_database(name: str, audiences: int) -> None:
    import aiomysql

    conn = await aiomysql.connect(
        host=servers.MARIADB_HOST,
        port=servers.MARIADB_PORT,
        user="root",
        password="",
        autocommit=True,
    )
    async with conn.cursor() as cursor:
        await cursor.execute(f"CREATE DATABASE `{name}`")
        await cursor.execute(f"USE `{name}`")
        await cursor.execute("CREATE TABLE branches (code VARCHAR(16) PRIMARY KEY, manager TEXT)")
        await cursor.execute(
            "CREATE TABLE lines_ (branch VARCHAR(16), line INT, amount INT, KEY (branch))"
        )
        for start in range(0, audiences, 1000):
            part = range(start, min(audiences, start + 1000))
            await cursor.execute(
                "INSERT INTO branches VALUES "
                + ", ".join(f"('B{i:06d}', 'm{i}@example.com')" for i in part)
            )
            await cursor.execute(
                "INSERT INTO lines_ VALUES "
                + ", ".join(f"('B{i:06d}', {n}, {i + n})" for i in part for n in (1, 2, 3))
            )
    conn.close()


async def run(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="rh-fanout-"))
    store_db = servers.create_database("mariadb", workdir)
    source_name = f"rh_fanout_src_{os.getpid()}"
    await source_database(source_name, max(args.audiences, args.baseline))
    receiver = Receiver()
    await receiver.start()
    settings = Settings.model_validate(
        {
            "store": {"url": store_db.url},
            "execution": {
                "workspace": str(workdir / "workspace"),
                "max_concurrent_executions": args.slots,
            },
        }
    )
    store = Store(settings.store)
    await store.start()
    await migrate.upgrade(store)
    statements = Counter[str]()

    parents: set[str] = set()

    @sa.event.listens_for(store.engine.sync_engine, "before_cursor_execute")
    def count(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        statements["all"] += 1
        task = asyncio.current_task()  # the statement's task: the parent's, or a child's
        if task is not None and task.get_name().removeprefix("execution-") in parents:
            statements["parent"] += 1

    # Below SQLAlchemy: every command the store's connections send (the writes sent on the
    # driver connection, store/executions.py `_update_mysql`, pass no SQLAlchemy event), COMMITs,
    # ROLLBACKs and SETs included.
    import aiomysql.connection

    database = store_db.name
    send = aiomysql.connection.Connection._execute_command

    async def execute_command(self: Any, command: int, sql: Any) -> Any:
        if self._db == database:
            statements["commands"] += 1
            head = sql[:8].decode(errors="replace") if isinstance(sql, bytes) else str(sql)[:8]
            if head.lstrip().upper().startswith(("COMMIT", "ROLLBACK", "SET")):
                statements["bookkeeping"] += 1
        return await send(self, command, sql)

    aiomysql.connection.Connection._execute_command = execute_command  # type: ignore[method-assign]

    try:
        source = {
            "host": servers.MARIADB_HOST,
            "port": servers.MARIADB_PORT,
            "username": "root",
            "password": "",
            "database": source_name,
        }
        async with store.engine.begin() as conn:
            ds = (
                await conn.execute(
                    sa.insert(schema.datasources).values(
                        name="src",
                        type="mysql",
                        connection_config=source,
                        max_concurrent_queries=args.slots,
                    )
                )
            ).inserted_primary_key[0]
            config = (
                await conn.execute(
                    sa.insert(schema.configs).values(
                        name="Branch statements",
                        datasource_id=ds,
                        output_format="csv",
                        query_text="SELECT branch, line, amount FROM lines_ WHERE branch = :branch",
                        file_name_template="statement_{{ branch }}",
                    )
                )
            ).inserted_primary_key[0]
            plain = (
                await conn.execute(
                    sa.insert(schema.configs).values(
                        name="Branch statement (plain)",
                        datasource_id=ds,
                        output_format="csv",
                        query_text="SELECT branch, line, amount FROM lines_ WHERE branch = :branch",
                        file_name_template="statement_{{ branch }}",
                    )
                )
            ).inserted_primary_key[0]
            await conn.execute(
                sa.insert(schema.audience_drivers).values(
                    config_id=config,
                    datasource_id=ds,
                    key_column="branch",
                    query_text=f"SELECT code AS branch, manager AS recipients FROM branches "
                    f"ORDER BY code LIMIT {args.audiences}",
                )
            )
            for config_id in (config, plain):
                await conn.execute(
                    sa.insert(schema.deliveries).values(
                        config_id=config_id,
                        name="hook",
                        method="webhook",
                        delivery_config={
                            "url": f"http://127.0.0.1:{receiver.port}/hook",
                            "mode": "multipart",
                        },
                    )
                )
        ledger = DeliveryLedger(settings, store, node_id="bench")
        engine = Engine(settings, store, node_id="bench", deliveries=ledger)
        await engine.start()

        statements.clear()
        checked_out: list[int] = []

        async def sample_pool() -> None:
            while True:
                checked_out.append(store.engine.sync_engine.pool.checkedout())  # type: ignore[attr-defined]
                await asyncio.sleep(0.1)

        sampler = asyncio.create_task(sample_pool(), name="pool-sampler")
        started = time.perf_counter()
        parent = await engine.create_and_submit(config, trigger_type=TriggerType.MANUAL)
        parents.add(parent)
        task = engine.task(parent)
        assert task is not None
        await task
        burst_seconds = time.perf_counter() - started
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
        burst_statements = statements["all"]
        parent_statements = statements["parent"]
        burst_commands, bookkeeping = statements["commands"], statements["bookkeeping"]
        counts = await audience_rows.counts(store, parent)
        assert counts.delivered == args.audiences, counts
        assert len(receiver.keys) == args.audiences and max(receiver.keys.values()) == 1

        baseline_seconds = None
        baseline_statements = 0
        if args.baseline:
            statements.clear()
            started = time.perf_counter()
            ids = [
                await engine.create_and_submit(
                    plain, trigger_type=TriggerType.MANUAL, parameters={"branch": f"B{i:06d}"}
                )
                for i in range(args.baseline)
            ]
            await asyncio.gather(*(t for i in ids if (t := engine.task(i)) is not None))
            baseline_seconds = time.perf_counter() - started
            baseline_statements = statements["all"]
        await engine.stop()
    finally:
        await store.stop()
        store_db.drop()
        servers._mariadb_admin(f"DROP DATABASE IF EXISTS `{source_name}`")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"audiences               {args.audiences}")
    print(f"pool slots              {args.slots}")
    print(f"burst wall time         {burst_seconds:.1f} s")
    print(f"burst throughput        {args.audiences / burst_seconds:.0f} audiences/s")
    print(
        f"SQLAlchemy statements   {burst_statements} "
        f"({burst_statements / args.audiences:.1f} per audience; the store's round trips before "
        "writes went to the driver connection)"
    )
    print(
        f"store commands          {burst_commands} "
        f"({burst_commands / args.audiences:.1f} per audience, below SQLAlchemy: its statements, "
        f"those sent on the driver connection, and {bookkeeping} COMMIT/ROLLBACK/SET)"
    )
    print(
        f"  of which the parent     {parent_statements} "
        f"({parent_statements / args.audiences:.3f} per audience: driver read, claims, counts)"
    )
    if baseline_seconds is not None:
        rate = args.baseline / baseline_seconds
        print(
            f"plain runs (baseline)   {args.baseline} in {baseline_seconds:.1f} s "
            f"({rate:.0f} runs/s, "
            f"{baseline_statements / args.baseline:.1f} round trips per run)"
        )
        print(f"ratio burst/plain       {(args.audiences / burst_seconds) / rate:.2f}x throughput")
    print(f"store connections       at most {max(checked_out, default=0)} checked out at once")
    print(f"peak RSS                {rss:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--audiences", type=int, default=10_000)
    parser.add_argument("--baseline", type=int, default=1000)
    parser.add_argument("--slots", type=int, default=16)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
