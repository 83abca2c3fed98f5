"""Overload: 2,000 executions posted at once to a real daemon with max_concurrent_executions = 10.
All complete; the store and the engine's own stats never show more than 10 RUNNING; the control
plane answers throughout (worst /healthz and /api/scheduler/status latencies are printed, not
judged); RSS after the burst stays within a generous bound of RSS before it."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from pathlib import Path

import aiohttp
import pytest
import sqlalchemy as sa

from reporthubd.store import schema
from reporthubd.store.database import Store
from tests.engine.conftest import add_config, add_datasource
from tests.reliability.conftest import Daemon

N = int(os.environ.get("REPORTHUB_OVERLOAD_EXECUTIONS", "2000"))
LIMIT = 10


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def gauge(text: str, name: str) -> int | None:
    """A Prometheus gauge's value from the /metrics text."""
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return int(float(line.rsplit(" ", 1)[1]))
    return None


# 2,000 runs ten at a time: about a minute on a quiet machine, two when the suite's background
# process shares the cores, so it gets more than the suite's default of 120 s.
@pytest.mark.timeout(300)
async def test_two_thousand_at_once_run_ten_at_a_time(tmp_path: Path, rstore: Store) -> None:
    data = tmp_path / "tiny.db"
    with sqlite3.connect(data) as conn:
        conn.execute("CREATE TABLE t (id INTEGER, label TEXT)")
        conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, f"r{i}") for i in range(20)])
    conn.close()
    ds = await add_datasource(rstore, "sqlite", {"path": str(data)})
    report = await add_config(rstore, ds, "SELECT id, label FROM t")
    daemon = Daemon(
        tmp_path,
        execution={"max_concurrent_executions": LIMIT},
        logging={"level": "WARNING"},
    )
    worst: dict[str, float] = {"/healthz": 0.0, "/api/scheduler/status": 0.0}
    failures: list[str] = []
    max_store_running = 0
    max_engine_running = 0
    max_status_running = 0
    samples = 0
    done = asyncio.Event()
    try:
        await daemon.ready()
        pid = daemon.process.proc.pid
        # Warm up (first run imports the CSV writer and SQLite connector) before measuring RSS.
        await daemon.wait_status(await daemon.execute(report))
        rss_before = rss_mb(pid)

        async def probe() -> None:
            nonlocal max_store_running, max_engine_running, max_status_running, samples
            async with aiohttp.ClientSession() as http:
                while not done.is_set():
                    for path in worst:
                        began = time.perf_counter()
                        try:
                            async with http.get(f"{daemon.base}{path}") as response:
                                body = await response.json()
                                if response.status != 200:
                                    failures.append(f"{path}: {response.status} {body}")
                        except (aiohttp.ClientError, TimeoutError) as exc:
                            failures.append(f"{path}: {exc!r}")
                            continue
                        worst[path] = max(worst[path], time.perf_counter() - began)
                        if path == "/api/scheduler/status":
                            running = int(body["data"]["executions"]["running"])
                            max_status_running = max(max_status_running, running)
                    async with http.get(f"{daemon.base}/metrics") as response:
                        running = gauge(await response.text(), "reporthubd_executions_running")
                    assert running is not None, "no reporthubd_executions_running gauge"
                    max_engine_running = max(max_engine_running, running)
                    async with rstore.engine.connect() as conn:
                        count = (
                            await conn.execute(
                                sa.select(sa.func.count()).where(
                                    schema.executions.c.status == "RUNNING"
                                )
                            )
                        ).scalar_one()
                    max_store_running = max(max_store_running, int(count))
                    samples += 1
                    await asyncio.sleep(0.02)

        prober = asyncio.create_task(probe(), name="overload-probe")
        connector = aiohttp.TCPConnector(limit=50)
        async with aiohttp.ClientSession(connector=connector) as http:

            async def post() -> str:
                async with http.post(f"{daemon.base}/api/execute/{report}") as response:
                    body = await response.json()
                    assert response.status == 202, body
                    return str(body["data"]["execution_id"])

            ids = await asyncio.gather(*(post() for _ in range(N)))
        assert len(set(ids)) == N
        while True:
            async with rstore.engine.connect() as conn:
                counts = dict(
                    (
                        await conn.execute(
                            sa.select(schema.executions.c.status, sa.func.count())
                            .where(schema.executions.c.id.in_(ids))
                            .group_by(schema.executions.c.status)
                        )
                    ).all()
                )
            if sum(v for k, v in counts.items() if k not in {"PENDING", "RUNNING"}) == N:
                break
            if daemon.process.proc.poll() is not None:
                raise AssertionError(daemon.process.output()[-3000:])
            await asyncio.sleep(0.5)
        done.set()
        await prober
        rss_after = rss_mb(pid)
    finally:
        done.set()
        await daemon.close()
    print(
        f"\noverload: {N} executions, limit {LIMIT}: worst latency /healthz "
        f"{worst['/healthz'] * 1000:.0f} ms, /api/scheduler/status "
        f"{worst['/api/scheduler/status'] * 1000:.0f} ms over {samples} samples; max RUNNING "
        f"store {max_store_running}, status {max_status_running}, engine gauge "
        f"{max_engine_running}; RSS {rss_before:.0f} MB → "
        f"{rss_after:.0f} MB"
    )
    assert counts == {"COMPLETED": N}, counts
    assert failures == [], failures[:10]
    assert samples > 0
    assert 1 <= max_store_running <= LIMIT, max_store_running
    assert 1 <= max_engine_running <= LIMIT, max_engine_running
    assert max_status_running <= LIMIT, max_status_running
    assert rss_after - rss_before < 300, (rss_before, rss_after)
