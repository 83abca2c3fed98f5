"""Control-plane responsiveness under load (issue 8): 200 concurrent `GET /api/scheduler/status`
while a 1,000,000-row Excel export runs in the same daemon, against the same 200 requests with
the daemon idle (the baseline, measured in the same run).

usage: .venv/bin/python bench/control.py [--rows 1000000] [--waves 5]

Builds (once) a 1M-row table `control_rows` in database `rh_bench` of the running PostgreSQL
(127.0.0.1:5432, user postgres), starts a real `reporthubd run` subprocess on a SQLite store with
one Excel report over that table, then:

- idle: `--waves` waves of 200 concurrent requests, daemon doing nothing;
- loaded: the export is started, and waves of 200 concurrent requests are sent one after another
  until it finishes (at least `--waves` of them).

Prints p50 / p99 / max latency of each, the ratio loaded/idle, the export's wall time and status.
Target (issue 8): p99 under 200 ms while the export runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import asyncpg

DATABASE = "rh_bench"
TABLE = "control_rows"


async def ensure_table(rows: int) -> None:
    admin = await asyncpg.connect(host="127.0.0.1", user="postgres", database="postgres")
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE):
            await admin.execute(f'CREATE DATABASE "{DATABASE}"')
    finally:
        await admin.close()
    conn = await asyncpg.connect(host="127.0.0.1", user="postgres", database=DATABASE)
    try:
        exists = await conn.fetchval("SELECT to_regclass($1)", TABLE)
        if exists and await conn.fetchval(f"SELECT count(*) FROM {TABLE}") == rows:
            return
        await conn.execute(f"DROP TABLE IF EXISTS {TABLE}")
        await conn.execute(
            f"""CREATE TABLE {TABLE} AS
            SELECT g AS id,
                   timestamp '2026-01-01' + g * interval '1 second' AS created_at,
                   md5(g::text) AS label,
                   (g % 100000)::numeric(12, 2) / 100 AS amount,
                   g % 3 = 0 AS flag
            FROM generate_series(1, {rows}) AS g"""
        )
    finally:
        await conn.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_daemon(work: Path, store_url: str | None = None) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    store_url = store_url or f"sqlite:///{work / 'store.db'}"
    config = work / "config.toml"
    config.write_text(
        f"""[store]
url = "{store_url}"
[control]
listen = "127.0.0.1:{port}"
[execution]
workspace = "{work / "workspace"}"
query_timeout_seconds = 3600
[logging]
level = "WARNING"
format = "json"
"""
    )
    catalog = work / "catalog.toml"
    catalog.write_text(
        f"""[[datasources]]
name = "bench"
type = "postgresql"
[datasources.connection_config]
host = "127.0.0.1"
port = 5432
database = "{DATABASE}"
username = "postgres"

[[reports]]
name = "big-excel"
datasource = "bench"
output_format = "excel"
query = "SELECT * FROM {TABLE} ORDER BY id"
"""
    )
    exe = [sys.executable, "-m", "reporthubd"]
    log = (work / "daemon.log").open("wb")
    proc = subprocess.Popen([*exe, "run", "-c", str(config)], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.1)
    subprocess.run(
        [*exe, "apply", str(catalog), "-c", str(config)], check=True, capture_output=True
    )
    return proc, port


async def wave(session: aiohttp.ClientSession, url: str, n: int) -> list[float]:
    async def one() -> float:
        started = time.perf_counter()
        async with session.get(url) as answer:
            await answer.read()
            if answer.status != 200:
                raise RuntimeError(f"status {answer.status}")
        return (time.perf_counter() - started) * 1000

    return list(await asyncio.gather(*(one() for _ in range(n))))


def summary(name: str, latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    p99 = ordered[max(0, int(len(ordered) * 0.99) - 1)]
    figures = {"p50": statistics.median(ordered), "p99": p99, "max": ordered[-1]}
    print(
        f"{name:<8} {len(ordered):>6} requests  p50 {figures['p50']:7.1f} ms  "
        f"p99 {figures['p99']:7.1f} ms  max {figures['max']:7.1f} ms"
    )
    return figures


async def measure(port: int, waves: int, concurrency: int) -> None:
    base = f"http://127.0.0.1:{port}"
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        url = f"{base}/api/scheduler/status"
        await wave(session, url, 10)  # warm up
        idle: list[float] = []
        for _ in range(waves):
            idle += await wave(session, url, concurrency)

        started = time.monotonic()
        async with session.post(f"{base}/api/execute/1", json={}) as answer:
            execution_id = (await answer.json())["data"]["execution_id"]
        loaded: list[float] = []
        waves_sent = 0
        status = "PENDING"
        while True:
            async with session.get(f"{base}/api/execution/{execution_id}") as answer:
                status = (await answer.json())["data"]["status"]
            if status not in ("PENDING", "RUNNING"):
                break
            if status == "RUNNING":
                loaded += await wave(session, url, concurrency)
                waves_sent += 1
            else:
                await asyncio.sleep(0.05)
        export_seconds = time.monotonic() - started

    print(f"export: {status} in {export_seconds:.1f} s; {waves_sent} waves sent while it ran")
    idle_figures = summary("idle", idle)
    if not loaded:
        print("the export finished before a wave could be sent: use more --rows")
        return
    loaded_figures = summary("loaded", loaded)
    print(
        "ratio loaded/idle: "
        + ", ".join(f"{k} {loaded_figures[k] / idle_figures[k]:.1f}x" for k in ("p50", "p99"))
    )
    verdict = "meets" if loaded_figures["p99"] < 200 else "MISSES"
    print(f"target p99 < 200 ms while exporting: {verdict} ({loaded_figures['p99']:.1f} ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--waves", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(ensure_table(args.rows))
    with tempfile.TemporaryDirectory(prefix="rh-bench-control-") as tmp:
        proc, port = start_daemon(Path(tmp))
        try:
            asyncio.run(measure(port, args.waves, args.concurrency))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=120)
    print(json.dumps({"cpus": os.cpu_count()}))


if __name__ == "__main__":
    main()
