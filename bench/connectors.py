"""Threads or the SDK's asyncio API? Loop lag and throughput of the synchronous-SDK connectors.

Streams the same result (rows of an integer and a 300-character text) three ways and prints wall
time, rows/s and the event loop's lag (how late a 5 ms ticker wakes up) while the rows flow:

- `threaded`: reporthubd's SnowflakeConnector (snowflake-connector-python in a worker thread,
  batches handed over through the bounded ThreadFeed),
- `aio`: snowflake-connector-python's own asyncio API (`snowflake.connector.aio`), if installed,
- `on_loop`: the synchronous connector called directly on the loop (what must not happen),

and the same for BigQuery (`threaded` vs `on_loop`; the SDK has no asyncio API). The servers are
the test fallbacks (fakesnow, bqemulator), started here on free ports. Ratios are against
`threaded` of the same round.

    .venv/bin/python bench/connectors.py                 # 3 rounds, 200,000 rows
    .venv/bin/python bench/connectors.py --rows 50000 --rounds 1 --suite snowflake
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from reporthubd.connectors import base
from reporthubd.connectors.base import QueryRequest
from reporthubd.domain import Datasource, DatasourceType
from tests.connectors import fallback_servers

TEXT = 300
BATCH = 5000


async def measure(run: Callable[[], Awaitable[int]]) -> dict[str, float]:
    """Wall time, rows and loop lag (p99/max of a 5 ms ticker's lateness) while `run` runs."""
    lags: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            planned = loop.time() + 0.005
            await asyncio.sleep(0.005)
            lags.append(max(0.0, loop.time() - planned))

    tick = asyncio.create_task(ticker(), name="lag-ticker")
    await asyncio.sleep(0.02)  # the ticker is running before the method starts
    started = time.perf_counter()
    rows = await run()
    wall = time.perf_counter() - started
    stop.set()
    await tick
    lags.sort()
    p99 = lags[int(len(lags) * 0.99) - 1] if lags else wall
    return {
        "wall": wall,
        "rows": rows,
        "p99_ms": p99 * 1000,
        "max_ms": (lags[-1] if lags else wall) * 1000,
    }


async def count(result: AsyncIterator[list[Any]]) -> int:
    return sum([len(batch) async for batch in result])


# --- Snowflake ------------------------------------------------------------------------------


def snowflake_runs(port: int, rows: int) -> dict[str, Callable[[], Awaitable[int]]]:
    sql = f"SELECT seq4() AS n, REPEAT('x', {TEXT}) AS s FROM TABLE(GENERATOR(ROWCOUNT => {rows}))"
    server = {"host": "127.0.0.1", "port": port, "protocol": "http"}
    kwargs = {"account": "fakesnow", "user": "fake", "password": "snow", "database": "BENCH"}

    async def threaded() -> int:
        conn = base.create(
            Datasource(
                id=1,
                name="bench",
                type=DatasourceType.SNOWFLAKE,
                connection_config={
                    "account": "fakesnow",
                    "username": "fake",
                    "password": "snow",
                    "database": "BENCH",
                    "options": server,
                },
            )
        )
        await conn.open()
        try:
            async with conn.stream(QueryRequest(sql=sql, batch_size=BATCH)) as result:
                return await count(result.batches())
        finally:
            await conn.close()

    async def on_loop() -> int:
        import snowflake.connector

        conn = snowflake.connector.connect(**kwargs, **server)
        try:
            cursor = conn.cursor()
            cursor.execute(sql)
            total = 0
            while batch := cursor.fetchmany(BATCH):
                total += len(batch)
                await asyncio.sleep(0)
            return total
        finally:
            conn.close()

    runs: dict[str, Callable[[], Awaitable[int]]] = {"threaded": threaded}
    try:
        from snowflake.connector.aio import SnowflakeConnection
    except ImportError:
        SnowflakeConnection = None

    if SnowflakeConnection is not None:

        async def aio() -> int:
            conn = SnowflakeConnection(**kwargs, **server)
            await conn.connect()
            try:
                cursor = conn.cursor()
                await cursor.execute(sql)
                total = 0
                while batch := await cursor.fetchmany(BATCH):
                    total += len(batch)
                return total
            finally:
                await conn.close()

        runs["aio"] = aio
    runs["on_loop"] = on_loop
    return runs


# --- BigQuery -------------------------------------------------------------------------------


def bigquery_runs(endpoint: str, rows: int) -> dict[str, Callable[[], Awaitable[int]]]:
    sql = f"SELECT x AS n, REPEAT('x', {TEXT}) AS s FROM UNNEST(GENERATE_ARRAY(1, {rows})) AS x"
    options = {"api_endpoint": endpoint, "anonymous": True, "connect_timeout_seconds": 30}

    async def threaded() -> int:
        conn = base.create(
            Datasource(
                id=2,
                name="bench",
                type=DatasourceType.BIGQUERY,
                connection_config={"project": "rh-test", "options": options},
            )
        )
        await conn.open()
        try:
            async with conn.stream(QueryRequest(sql=sql, batch_size=BATCH)) as result:
                return await count(result.batches())
        finally:
            await conn.close()

    async def on_loop() -> int:
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import bigquery

        client = bigquery.Client(
            project="rh-test",
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=endpoint),
        )
        total = 0
        for page in client.query(sql).result(page_size=BATCH).pages:
            total += page.num_items
            await asyncio.sleep(0)
        client.close()
        return total

    return {"threaded": threaded, "on_loop": on_loop}


def report(suite: str, results: dict[str, list[dict[str, float]]]) -> None:
    print(f"\n== {suite}")
    print(f"{'method':10} {'wall s':>8} {'rows/s':>10} {'lag p99 ms':>11} {'lag max ms':>11} ratio")
    print("(medians over the rounds; per-round worst lag in brackets)")
    base_wall = statistics.median(r["wall"] for r in results["threaded"])
    for method, rounds in results.items():
        wall = statistics.median(r["wall"] for r in rounds)
        rows = rounds[0]["rows"]
        p99 = statistics.median(r["p99_ms"] for r in rounds)
        worst = statistics.median(r["max_ms"] for r in rounds)
        per_round = ", ".join(f"{r['max_ms']:.0f}" for r in rounds)
        print(
            f"{method:10} {wall:8.2f} {rows / wall:10.0f} {p99:11.1f} {worst:11.1f}"
            f" {wall / base_wall:5.2f}x  [{per_round}]"
        )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--suite", default="snowflake,bigquery")
    args = parser.parse_args()
    suites = set(args.suite.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        if "snowflake" in suites:
            server = fallback_servers.FakeSnowflake(Path(tmp) / "fakesnow")
            server.start()
            try:
                runs = snowflake_runs(server.port, args.rows)
                results: dict[str, list[dict[str, float]]] = {name: [] for name in runs}
                for _ in range(args.rounds):
                    for name, run in runs.items():
                        results[name].append(await measure(run))
                report(f"snowflake (fakesnow), {args.rows} rows", results)
            finally:
                server.stop()
        if "bigquery" in suites and not fallback_servers.bqemulator_available():
            emulator = fallback_servers.BigQueryEmulator(Path(tmp) / "bq")
            emulator.start()
            try:
                runs = bigquery_runs(emulator.endpoint, args.rows)
                results = {name: [] for name in runs}
                for _ in range(args.rounds):
                    for name, run in runs.items():
                        results[name].append(await measure(run))
                report(f"bigquery (bqemulator), {args.rows} rows", results)
            finally:
                emulator.stop()


if __name__ == "__main__":
    asyncio.run(main())
