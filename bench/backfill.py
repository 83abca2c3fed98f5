"""Backfill throughput (issue 20, item 3): one real `reporthubd run` over a SQLite store runs a
backfill of N fires of a `SELECT 1` report, at --concurrency 1 and at 4, and the same N runs
submitted at once through POST /api/execute (the engine's own pace, the baseline). Prints the wall
time and fires/s of each, and the ratios to the baseline, measured in the same run.

    .venv/bin/python bench/backfill.py [--fires 120]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from reporthubd.config import StoreSettings
from reporthubd.store import migrate, schema
from reporthubd.store.database import Store


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _call(port: int, path: str, body: Any = None) -> dict[str, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=data, method="POST" if data else "GET"
    )
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())  # type: ignore[no-any-return]


async def _seed(url: str, source: Path, schedules: int) -> tuple[int, list[int]]:
    store = Store(StoreSettings(url=url))
    await store.start()
    await migrate.upgrade(store)
    sqlite3.connect(source).close()
    async with store.engine.begin() as conn:
        ds = await conn.execute(
            sa.insert(schema.datasources).values(
                name="src", type="sqlite", connection_config={"path": str(source)}
            )
        )
        config = await conn.execute(
            sa.insert(schema.configs).values(
                name="one",
                datasource_id=ds.inserted_primary_key[0],
                query_text="SELECT 1 AS one",
                output_format="csv",
            )
        )
        config_id = int(config.inserted_primary_key[0])
        ids = []
        for _ in range(schedules):
            row = await conn.execute(
                sa.insert(schema.schedules).values(
                    config_id=config_id, cron_expression="0 * * * *", is_active=False
                )
            )
            ids.append(int(row.inserted_primary_key[0]))
    await store.stop()
    return config_id, ids


def _wait_backfill(port: int, backfill_id: str) -> None:
    while True:
        data = _call(port, f"/api/backfills/{backfill_id}")["data"]
        if data["status"] not in ("PENDING", "RUNNING"):
            assert data["done"] == data["total"] and data["failed"] == 0, data
            return
        time.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fires", type=int, default=120)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-backfill-"))
    url = f"sqlite:///{tmp / 'store.db'}"
    config_id, schedule_ids = asyncio.run(_seed(url, tmp / "src.db", 2))
    port = _port()
    config = tmp / "config.toml"
    config.write_text(
        f'[store]\nurl = "{url}"\n[control]\nlisten = "127.0.0.1:{port}"\n'
        f'[execution]\nworkspace = "{tmp / "ws"}"\nmax_concurrent_executions = 4\n'
        '[logging]\nlevel = "WARNING"\n',
        encoding="utf-8",
    )
    daemon = subprocess.Popen(
        [sys.executable, "-m", "reporthubd", "run", "-c", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(300):
            try:
                _call(port, "/healthz")
                break
            except OSError:
                time.sleep(0.1)
        end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        start = end - timedelta(hours=args.fires)
        results: dict[str, float] = {}
        # baseline: the same number of runs handed to the engine at once
        began = time.perf_counter()
        ids = [
            _call(port, f"/api/execute/{config_id}", {})["data"]["execution_id"]
            for _ in range(args.fires)
        ]
        while True:
            states = [_call(port, f"/api/execution/{i}")["data"]["status"] for i in ids[-4:]]
            if all(s == "COMPLETED" for s in states):
                break
            time.sleep(0.05)
        results["execute x N (baseline)"] = time.perf_counter() - began
        for concurrency, schedule_id in zip((1, 4), schedule_ids, strict=True):
            began = time.perf_counter()
            answer = _call(
                port,
                f"/api/schedules/{schedule_id}/backfill",
                {
                    "from": start.isoformat(),
                    "to": (end - timedelta(seconds=1)).isoformat(),
                    "concurrency": concurrency,
                },
            )
            assert answer["data"]["to_run"] == args.fires, answer
            _wait_backfill(port, answer["data"]["backfill_id"])
            results[f"backfill --concurrency {concurrency}"] = time.perf_counter() - began
    finally:
        daemon.terminate()
        daemon.wait(30)
    base = results["execute x N (baseline)"]
    print(f"{args.fires} fires of SELECT 1 on SQLite, one daemon, pool 4")
    print(f"{'method':32} {'wall s':>8} {'fires/s':>8} {'x baseline':>10}")
    for name, seconds in results.items():
        print(f"{name:32} {seconds:8.2f} {args.fires / seconds:8.1f} {seconds / base:10.2f}")


if __name__ == "__main__":
    main()
