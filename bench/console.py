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
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import control as control_bench  # noqa: E402  (bench/control.py: the 1M-row table, helpers)

from reporthubd.store import schema  # noqa: E402
from reporthubd.store.console import Cursor  # noqa: E402
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
                cursors.append(Cursor(created_at=created, execution_id=execution_id).text())
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
    paths += [f"{base}?after={quote(c, safe='')}" for c in cursors]
    return paths


def api_paths(cursors: list[str], now: datetime) -> list[str]:
    """The same history through `GET /api/executions` (what a script or a generated client
    reads): the newest page, filters, a time range, and keyset pages deep in the history."""
    since = quote((now - timedelta(days=30)).isoformat(), safe="")
    until = quote((now - timedelta(days=29)).isoformat(), safe="")
    base = "/api/executions?config_id=1&limit=50"
    paths = [
        base,
        f"{base}&status=FAILED",
        f"{base}&status=FAILED,TIMEOUT",
        f"{base}&since={since}&until={until}",
        f"{base}&status=COMPLETED",
    ]
    paths += [f"{base}&after={quote(c, safe='')}" for c in cursors]
    return paths


PER_PATH = False
BY_PATH: dict[str, list[float]] = {}
"""Every latency of each path, both phases: `--per-path` prints the slowest."""

Paths = list[tuple[str, str]]
"""(kind, path): kind "page" (the console's history page) or "api" (GET /api/executions)."""


async def phase(
    session: aiohttp.ClientSession, base: str, paths: Paths, n: int, concurrency: int
) -> dict[str, list[float]]:
    cycle = itertools.cycle(paths)
    latencies: dict[str, list[float]] = {kind: [] for kind, _ in paths}
    done = 0

    async def worker() -> None:
        nonlocal done
        while done < n:
            done += 1
            kind, path = next(cycle)
            started = time.perf_counter()
            async with session.get(base + path) as answer:
                await answer.read()
                if answer.status != 200:
                    raise RuntimeError(f"{path}: status {answer.status}")
            elapsed = (time.perf_counter() - started) * 1000
            latencies[kind].append(elapsed)
            BY_PATH.setdefault(path, []).append(elapsed)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


def merge(into: dict[str, list[float]], more: dict[str, list[float]]) -> None:
    for kind, values in more.items():
        into.setdefault(kind, []).extend(values)


async def measure(port: int, paths: Paths, requests: int, concurrency: int) -> dict[str, Any]:
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        await phase(session, base, paths, 40, 1)  # warm up (templates compiled, caches)
        idle = await phase(session, base, paths, requests, concurrency)
        async with session.post(f"{base}/api/execute/1", json={"deliver": False}) as answer:
            execution_id = (await answer.json())["data"]["execution_id"]
        loaded: dict[str, list[float]] = {}
        started = time.monotonic()
        while True:
            async with session.get(f"{base}/api/execution/{execution_id}") as answer:
                execution = (await answer.json())["data"]
            status = execution["status"]
            if status not in ("PENDING", "RUNNING"):
                break
            if status == "RUNNING":
                merge(loaded, await phase(session, base, paths, 50, concurrency))
            else:
                await asyncio.sleep(0.05)
        export_seconds = time.monotonic() - started
    served = sum(len(v) for v in loaded.values())
    if PER_PATH:
        print("  slowest paths (median over both phases):")
        medians = sorted(((statistics.median(v), p) for p, v in BY_PATH.items()), reverse=True)
        for median, path in medians[:6]:
            print(f"    {median:7.1f} ms  {path[:110]}")
    BY_PATH.clear()
    print(
        f"  export: {status}, {execution.get('row_count') or 0:,} rows in {export_seconds:.1f} s;"
        f" {served} requests served meanwhile"
    )
    out: dict[str, Any] = {}
    for kind in idle:
        label = {"page": "history page", "api": "history API"}[kind]
        print(f"  {label}:")
        idle_figures = control_bench.summary("    idle", idle[kind])
        if not loaded.get(kind):
            print("    the export finished before a request was sent: use more --rows")
            continue
        loaded_figures = control_bench.summary("    loaded", loaded[kind])
        print(
            "    ratio loaded/idle: "
            + ", ".join(f"{k} {loaded_figures[k] / idle_figures[k]:.1f}x" for k in ("p50", "p99"))
        )
        verdict = "meets" if loaded_figures["p99"] < 200 else "MISSES"
        p99 = loaded_figures["p99"]
        print(f"    target p99 < 200 ms while exporting: {verdict} ({p99:.1f} ms)")
        out[kind] = {"idle": idle_figures, "loaded": loaded_figures}
    return out


def run_store(
    backend: str,
    history: int,
    requests: int,
    concurrency: int,
    kinds: set[str],
) -> None:
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
                now = datetime.now(UTC)
                paths: Paths = [("page", p) for p in page_paths(cursors, now)]
                if "api" in kinds:
                    paths += [("api", p) for p in api_paths(cursors, now)]
                if "page" not in kinds:
                    paths = [p for p in paths if p[0] != "page"]
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
    parser.add_argument("--kinds", default="page,api", help="page (console), api (executions)")
    parser.add_argument("--per-path", action="store_true", help="print the slowest paths")
    args = parser.parse_args()
    global PER_PATH
    PER_PATH = args.per_path
    asyncio.run(control_bench.ensure_table(args.rows))
    for backend in args.stores.split(","):
        run_store(
            backend,
            args.history,
            args.requests,
            args.concurrency,
            set(args.kinds.split(",")),
        )
    print(subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip(), "cpus")


if __name__ == "__main__":
    main()
