"""The console's history page with 100,000 runs in the store (issue 21): latency of
`GET /api/console/view/reports/1` (the server-rendered page a browser fetches) while a
1,000,000-row Excel export runs in the same daemon, against the same requests with the daemon
idle (the baseline, measured in the same run), on a SQLite and a MariaDB store.

usage: .venv/bin/python bench/console.py [--stores sqlite,mariadb] [--history 100000]
                                         [--rows 1000000] [--concurrency 4]

The export reads the 1M-row table of bench/control.py (PostgreSQL, database rh_bench). Each
store is a fresh database: the daemon creates its schema, `apply` writes the report, then
`--history` executions of that report (mixed statuses and triggers, one a minute back in time)
are inserted directly. Requests cycle through the pages an operator opens: the newest page, a
status filter (FAILED, 5% of the runs), a trigger filter, a time range, and keyset pages deep in
the history (the 1,000th page back). Each request is one console page, `--concurrency` at once
(a few operators). Prints p50 / p99 / max of each phase, the ratio, and the verdict against the
target: p99 under 200 ms while the export runs.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import control as control_bench  # noqa: E402  (bench/control.py: the 1M-row table, helpers)

from reporthubd.store import schema  # noqa: E402
from tests import servers  # noqa: E402

STATUSES = ["COMPLETED"] * 90 + ["FAILED"] * 5 + ["SKIPPED"] * 3 + ["PARTIAL"] * 2
TRIGGERS = ["schedule"] * 8 + ["manual", "recovery"]


def seed_history(sync_url: str, config_id: int, count: int) -> list[str]:
    """Insert `count` finished runs of `config_id`; returns keyset cursors deep in history."""
    engine = sa.create_engine(sync_url)
    now = datetime.now(UTC).replace(microsecond=0)
    cursors = []
    with engine.begin() as conn:
        batch = []
        for n in range(count):
            created = now - timedelta(minutes=n + 10)
            status = STATUSES[n % len(STATUSES)]
            execution_id = str(uuid.UUID(int=n + 1))
            batch.append(
                {
                    "id": execution_id,
                    "config_id": config_id,
                    "trigger_type": TRIGGERS[n % len(TRIGGERS)],
                    "status": status,
                    "created_at": created,
                    "started_at": created,
                    "finished_at": created + timedelta(seconds=3 + n % 40),
                    "row_count": 1000 + n % 5000,
                    "error_message": "the query failed: timeout" if status == "FAILED" else None,
                    "parameters": {},
                }
            )
            if n % 20_000 == 10_000:
                cursors.append(f"{created.isoformat()}|{execution_id}")
            if len(batch) == 5000:
                conn.execute(schema.executions.insert(), batch)
                batch = []
        if batch:
            conn.execute(schema.executions.insert(), batch)
    engine.dispose()
    return cursors


def page_paths(cursors: list[str], now: datetime) -> list[str]:
    since = (now - timedelta(days=30)).strftime("%Y-%m-%dT%H:%M")
    until = (now - timedelta(days=29)).strftime("%Y-%m-%dT%H:%M")
    base = "/api/console/view/reports/1"
    paths = [
        base,
        f"{base}?status=FAILED",
        f"{base}?trigger=manual",
        f"{base}?since={since}&until={until}",
        f"{base}?status=COMPLETED&trigger=schedule",
    ]
    paths += [f"{base}?after={aiohttp.helpers.quote(c, safe='')}" for c in cursors]
    return paths


async def phase(
    session: aiohttp.ClientSession, base: str, paths: list[str], n: int, concurrency: int
) -> list[float]:
    cycle = itertools.cycle(paths)
    latencies: list[float] = []

    async def worker() -> None:
        while len(latencies) < n:
            path = next(cycle)
            started = time.perf_counter()
            async with session.get(base + path) as answer:
                await answer.read()
                if answer.status != 200:
                    raise RuntimeError(f"{path}: status {answer.status}")
            latencies.append((time.perf_counter() - started) * 1000)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


async def measure(port: int, paths: list[str], requests: int, concurrency: int) -> None:
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        await phase(session, base, paths, 20, 1)  # warm up (templates compiled, caches)
        idle = await phase(session, base, paths, requests, concurrency)
        async with session.post(f"{base}/api/execute/1", json={"deliver": False}) as answer:
            execution_id = (await answer.json())["data"]["execution_id"]
        loaded: list[float] = []
        started = time.monotonic()
        while True:
            async with session.get(f"{base}/api/execution/{execution_id}") as answer:
                status = (await answer.json())["data"]["status"]
            if status not in ("PENDING", "RUNNING"):
                break
            if status == "RUNNING":
                loaded += await phase(session, base, paths, 50, concurrency)
            else:
                await asyncio.sleep(0.05)
        export_seconds = time.monotonic() - started
    print(f"  export: {status} in {export_seconds:.1f} s; {len(loaded)} pages served meanwhile")
    idle_figures = control_bench.summary("  idle", idle)
    if not loaded:
        print("  the export finished before a page could be asked for: use more --rows")
        return
    loaded_figures = control_bench.summary("  loaded", loaded)
    print(
        "  ratio loaded/idle: "
        + ", ".join(f"{k} {loaded_figures[k] / idle_figures[k]:.1f}x" for k in ("p50", "p99"))
    )
    verdict = "meets" if loaded_figures["p99"] < 200 else "MISSES"
    print(f"  target p99 < 200 ms while exporting: {verdict} ({loaded_figures['p99']:.1f} ms)")


def run_store(backend: str, history: int, requests: int, concurrency: int) -> None:
    with tempfile.TemporaryDirectory(prefix="rh-bench-console-") as tmp:
        work = Path(tmp)
        database = servers.create_database(backend, work)
        sync_url = (
            database.url.replace("mysql://", "mysql+pymysql://", 1)
            if backend == "mariadb"
            else database.url
        )
        try:
            # The daemon creates a SQLite store's schema itself, never a server's.
            upgrade = work / "upgrade.toml"
            upgrade.write_text(f'[store]\nurl = "{database.url}"\n', encoding="utf-8")
            subprocess.run(
                [sys.executable, "-m", "reporthubd", "db", "upgrade", "-c", str(upgrade)],
                check=True,
                capture_output=True,
            )
            proc, port = control_bench.start_daemon(work, store_url=database.url)
            try:
                started = time.monotonic()
                cursors = seed_history(sync_url, 1, history)
                print(f"{backend}: {history:,} runs inserted in {time.monotonic() - started:.0f} s")
                paths = page_paths(cursors, datetime.now(UTC))
                asyncio.run(measure(port, paths, requests, concurrency))
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=120)
        finally:
            database.drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", default="sqlite,mariadb")
    parser.add_argument("--history", type=int, default=100_000)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    asyncio.run(control_bench.ensure_table(args.rows))
    for backend in args.stores.split(","):
        run_store(backend, args.history, args.requests, args.concurrency)
    print(subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip(), "cpus")


if __name__ == "__main__":
    main()
