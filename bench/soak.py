"""Soak (issue 10): a real `reporthubd run` over a MariaDB store, N schedules (default 500) firing
every minute with a small SQLite report each, for --minutes (default 60).

usage: .venv/bin/python bench/soak.py [--minutes 60] [--schedules 500] [--sample 15]
                                      [--concurrency 10] [--mariadb mysql://root@127.0.0.1:3306]

Prints, every --sample seconds, the daemon's RSS and open file descriptors (from /proc); at the
end, per minute: fires claimed, their statuses, and the start lateness (started_at -
scheduled_for, which includes waiting for one of the --concurrency slots) p50/p99/max; the
scheduler's own claim lateness; then the accounting check: every (schedule, minute) between the
first and the last whole minute of the run has exactly one execution row, and every one ended
COMPLETED. Exit status 1 when the accounting fails. Memory and descriptor figures are printed
with their first/last/max, not judged: compare the first samples (after warm-up) with the last.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reporthubd.config import StoreSettings  # noqa: E402
from reporthubd.store import migrate, schema  # noqa: E402
from reporthubd.store.database import Store  # noqa: E402


def admin(server: str, sql: str) -> None:
    import pymysql

    parts = urlsplit(server)
    conn = pymysql.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=parts.username or "root",
        password=parts.password or "",
    )
    try:
        with conn.cursor() as cursor:
            cursor.execute(sql)
    finally:
        conn.close()


def proc_figures(pid: int) -> tuple[float, int]:
    rss = 0.0
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) / 1024
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def write_config(work: Path, url: str, concurrency: int) -> tuple[Path, int]:
    """The daemon's config for a soak-like run: the store, a free port, a workspace whose files
    the janitor removes quickly, warnings-only JSON logs."""
    port = free_port()
    config = work / "config.toml"
    config.write_text(
        "\n".join(
            [
                "[store]",
                f"url = {json.dumps(url)}",
                "[control]",
                f'listen = "127.0.0.1:{port}"',
                "[execution]",
                f"workspace = {json.dumps(str(work / 'workspace'))}",
                f"max_concurrent_executions = {concurrency}",
                "file_retention_hours = 0.01",
                "[logging]",
                'format = "json"',
                'level = "WARNING"',
                "",
            ]
        ),
        encoding="utf-8",
    )
    return config, port


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def claim_lateness(port: int) -> object:
    """The scheduler's own lateness summary (fire claimed in the store minus its due time)."""
    import urllib.request

    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/api/scheduler/status", timeout=10
        ) as answer:
            return json.loads(answer.read())["data"]["fire_lateness"]
    except OSError as exc:
        return f"unavailable: {exc}"


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def scratch(label: str, server: str) -> tuple[Path, Path, str, str]:
    """A work directory with the reports' SQLite source (table t, 200 rows) and a new store
    database on `server`: (work, source path, database name, store URL)."""
    work = Path(tempfile.mkdtemp(prefix=f"rh-{label}-"))
    data = work / "data.db"
    with sqlite3.connect(data) as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, label TEXT)")
        conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, f"row {i}") for i in range(200)])
    conn.close()
    name = f"rh_{label}_{secrets.token_hex(4)}"
    admin(server, f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    return work, data, name, f"{server.rstrip('/')}/{name}"


async def setup(url: str, data: Path, n: int) -> None:
    store = Store(StoreSettings(url=url))
    await store.start()
    try:
        await migrate.upgrade(store)
        async with store.engine.begin() as conn:
            ds = await conn.execute(
                sa.insert(schema.datasources).values(
                    name="soak", type="sqlite", connection_config={"path": str(data)}
                )
            )
            configs = []
            for i in range(10):
                result = await conn.execute(
                    sa.insert(schema.configs).values(
                        name=f"soak-{i}",
                        datasource_id=ds.inserted_primary_key[0],
                        query_text=f"SELECT id, label FROM t WHERE id % 10 = {i}",
                        output_format="csv",
                    )
                )
                configs.append(result.inserted_primary_key[0])
            await conn.execute(
                sa.insert(schema.schedules),
                [
                    {
                        "config_id": configs[i % 10],
                        "cron_expression": "* * * * *",
                        "timezone": "UTC",
                    }
                    for i in range(n)
                ],
            )
    finally:
        await store.stop()


async def account(url: str, first: datetime, last: datetime, n: int) -> dict[str, Any]:
    store = Store(StoreSettings(url=url))
    await store.start()
    try:
        async with store.engine.connect() as conn:
            rows = list(
                await conn.execute(
                    sa.select(
                        schema.executions.c.schedule_id,
                        schema.executions.c.scheduled_for,
                        schema.executions.c.status,
                        schema.executions.c.started_at,
                        schema.executions.c.finished_at,
                    ).where(schema.executions.c.schedule_id.is_not(None))
                )
            )
            schedule_ids = [r[0] for r in await conn.execute(sa.select(schema.schedules.c.id))]
    finally:
        await store.stop()
    per_fire: Counter[tuple[int, datetime]] = Counter()
    per_minute: dict[datetime, list[float]] = defaultdict(list)
    status_by_minute: dict[datetime, Counter[str]] = defaultdict(Counter)
    for schedule_id, scheduled_for, status, started_at, _finished in rows:
        minute = scheduled_for.astimezone(UTC)
        per_fire[(schedule_id, minute)] += 1
        status_by_minute[minute][status] += 1
        if started_at is not None:
            per_minute[minute].append((started_at - scheduled_for).total_seconds())
    missing, duplicated, not_completed = 0, 0, 0
    minute = first
    while minute <= last:
        for schedule_id in schedule_ids:
            count = per_fire.get((schedule_id, minute), 0)
            missing += count == 0
            duplicated += count > 1
        not_completed += sum(c for s, c in status_by_minute[minute].items() if s != "COMPLETED")
        minute += timedelta(minutes=1)
    table = []
    for minute in sorted(status_by_minute):
        late = per_minute[minute]
        table.append(
            {
                "minute": minute.strftime("%H:%M"),
                "fires": sum(status_by_minute[minute].values()),
                "statuses": dict(status_by_minute[minute]),
                "late_p50_s": round(pct(late, 50), 3),
                "late_p99_s": round(pct(late, 99), 3),
                "late_max_s": round(max(late), 3) if late else None,
            }
        )
    return {
        "schedules": len(schedule_ids),
        "window": f"{first:%H:%M}..{last:%H:%M} UTC",
        "expected_fires": len(schedule_ids) * (int((last - first).total_seconds() // 60) + 1),
        "missing": missing,
        "duplicated": duplicated,
        "not_completed": not_completed,
        "minutes": table,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60)
    parser.add_argument("--schedules", type=int, default=500)
    parser.add_argument("--sample", type=float, default=15)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--mariadb", default="mysql://root@127.0.0.1:3306")
    args = parser.parse_args()

    work, data, name, url = scratch("soak", args.mariadb)
    daemon: subprocess.Popen[bytes] | None = None
    try:
        asyncio.run(setup(url, data, args.schedules))
        config, port = write_config(work, url, args.concurrency)
        log = (work / "daemon.log").open("wb")
        daemon = subprocess.Popen(
            [sys.executable, "-m", "reporthubd", "run", "-c", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        started = datetime.now(UTC)
        end = time.monotonic() + args.minutes * 60
        samples: list[tuple[float, float, int]] = []
        print(f"soak: {args.schedules} schedules every minute, {args.minutes} min, store {name}")
        print(f"{'elapsed_s':>9} {'rss_mb':>8} {'fds':>5}")
        t0 = time.monotonic()
        while time.monotonic() < end:
            time.sleep(min(args.sample, max(0.0, end - time.monotonic())))
            if daemon.poll() is not None:
                print("daemon exited early:", daemon.returncode)
                break
            rss, fds = proc_figures(daemon.pid)
            samples.append((time.monotonic() - t0, rss, fds))
            print(f"{samples[-1][0]:9.0f} {rss:8.1f} {fds:5d}", flush=True)
        stopped = datetime.now(UTC)
        # Let the last whole minute's fires finish before stopping.
        time.sleep(20)
        scheduler_lateness = claim_lateness(port)
        daemon.send_signal(signal.SIGTERM)
        code = daemon.wait(timeout=120)
        first = (started + timedelta(minutes=1)).replace(second=0, microsecond=0)
        last = (stopped - timedelta(seconds=5)).replace(second=0, microsecond=0)
        result = asyncio.run(account(url, first, last, args.schedules))
        rss_values = [s[1] for s in samples]
        fd_values = [s[2] for s in samples]
        print(f"exit code {code}")
        print("minute  fires  statuses                      late p50/p99/max (s)")
        for row in result.pop("minutes"):
            print(
                f"{row['minute']}  {row['fires']:5d}  {json.dumps(row['statuses']):28s}  "
                f"{row['late_p50_s']}/{row['late_p99_s']}/{row['late_max_s']}"
            )
        if samples:
            print(
                f"RSS MB first/last/max: {rss_values[0]:.1f}/{rss_values[-1]:.1f}/"
                f"{max(rss_values):.1f}; open fds first/last/max: "
                f"{fd_values[0]}/{fd_values[-1]}/{max(fd_values)}"
            )
        print("scheduler fire lateness (claim committed - due):", json.dumps(scheduler_lateness))
        print(json.dumps(result))
        ok = (
            code == 0
            and result["missing"] == 0
            and result["duplicated"] == 0
            and result["not_completed"] == 0
        )
        print("accounting:", "OK" if ok else "FAILED")
        if not ok:
            print((work / "daemon.log").read_text(errors="replace")[-3000:])
            sys.exit(1)
    finally:
        if daemon is not None and daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        admin(args.mariadb, f"DROP DATABASE IF EXISTS `{name}`")


if __name__ == "__main__":
    main()
