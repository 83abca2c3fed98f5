"""Scheduler benchmark (issue 3): reporthubd's scheduler, claiming every fire in MariaDB, against
APScheduler 3's AsyncIOScheduler (MemoryJobStore, no persistence), on the same schedules.

usage: .venv/bin/python bench/scheduler.py [--window 125] [--runs mix:10000,burst:10000,...]
                                           [--methods reporthubd,apscheduler,floor]
                                           [--mariadb mysql://root@127.0.0.1:3306]

Shapes (UTC and four other zones, round-robin: Europe/Berlin, America/New_York, Asia/Kolkata,
Australia/Lord_Howe):

- mix: the anchors' realistic mix — 50% `* * * * *`, 15% `*/2`, 10% `*/5`, 10% hourly at minute
  i%60, 5% `*/15 9-17 * * 1-5`, 5% daily, 5% monthly — so 5,000-7,500 of 10,000 are due in the
  same second every minute.
- burst: every schedule `* * * * *` (all N due in the same second, every minute; the issue's
  `0 * * * *` read as second 0 of each minute, so that the window holds several bursts).
- fleet: a large deployment's spread (issue 16's 1,000,000-schedule shape) — 1% `* * * * *`,
  2% `*/5`, 2% `*/15`, 25% hourly at minute i%60, 50% daily at i%60 i%24, 20% weekly on day
  i%7 — so a minute boundary of 1,000,000 has 14,000 fires, 35,000 at :05, :10, ..., 55,000 at
  :00, :15, :30 and :45.
- sparse: 1,000 schedules on distinct seconds (`S M/17 * * * *`: slot i*1020/N of a 17-minute
  cycle, S = slot%60, M = slot//60): one fire per second, alone, in 58-59 seconds of every
  minute — pure timer accuracy.

Each (method, shape, N) runs in its own process (this script re-invoked with --worker). Setup
(for reporthubd: a fresh MariaDB database, migrated, with N schedule rows) is not measured; "load"
is reporthubd's Scheduler.start() (read and validate every row, build the heap, catch-up query)
or APScheduler's add_job x N + start(). The measured window starts at second 58 of a minute and
lasts --window seconds (125 s spans three minute boundaries). Reported: load time, RSS after load,
CPU seconds (process user+sys) over the window, CPU ms per fire, and fire lateness p50/p99/max,
where lateness is, for reporthubd, the moment the fire's claim (its execution row) committed in
MariaDB minus its due time, and for APScheduler the moment the job started minus its due time.
MariaDB's own CPU is not counted.

A third method, `floor` (sparse shape only), is the least a durable claim can cost in this
process model: each second, one INSERT IGNORE + COMMIT round trip on one raw aiomysql connection
and nothing else. reporthubd / floor is what the scheduler adds to the store round trip it
cannot avoid; floor / APScheduler shows whether any design claiming every fire in the store can
use less CPU per fire than an in-memory scheduler.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import secrets
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"]


def schedules(shape: str, n: int) -> list[tuple[str, str]]:
    out = []
    for i in range(n):
        zone = ZONES[i % len(ZONES)]
        if shape == "burst":
            out.append(("* * * * *", zone))
            continue
        if shape == "sparse":
            # 1,000 of the 1,020 seconds in a 17-minute cycle, the 20 gaps spread evenly, so
            # that every minute has 58-59 fires
            slot = i * 1020 // n
            out.append((f"{slot % 60} {slot // 60}/17 * * * *", zone))
            continue
        if shape == "fleet":
            out.append((_fleet(i), zone))
            continue
        k = (i // len(ZONES)) % 20
        if k < 10:
            e = "* * * * *"
        elif k < 13:
            e = "*/2 * * * *"
        elif k < 15:
            e = "*/5 * * * *"
        elif k < 17:
            e = f"{i % 60} * * * *"
        elif k < 18:
            e = "*/15 9-17 * * 1-5"
        elif k < 19:
            e = f"{i % 60} {i % 24} * * *"
        else:
            e = f"{i % 60} {i % 24} {1 + i % 28} * *"
        out.append((e, zone))
    return out


def _fleet(i: int) -> str:
    k = (i // len(ZONES)) % 100
    if k < 1:
        return "* * * * *"
    if k < 3:
        return "*/5 * * * *"
    if k < 5:
        return "*/15 * * * *"
    if k < 30:
        return f"{i % 60} * * * *"
    if k < 80:
        return f"{i % 60} {i % 24} * * *"
    return f"{i % 60} {i % 24} * * {i % 7}"


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def align() -> None:
    """Sleep until second 58 of a minute (the next one if fewer than 2 s remain)."""
    sec = time.time() % 60
    wait = (58 - sec) % 60
    if wait < 2:
        wait += 60
    await asyncio.sleep(wait)


def percentiles(lat_ms: list[float]) -> dict[str, float | None]:
    lat_ms.sort()

    def pct(p: float) -> float | None:
        if not lat_ms:
            return None
        return round(lat_ms[min(len(lat_ms) - 1, int(p / 100 * len(lat_ms)))], 2)

    return {
        "fires": len(lat_ms),
        "p50_ms": pct(50),
        "p99_ms": pct(99),
        "max_ms": round(lat_ms[-1], 2) if lat_ms else None,
    }


# -- reporthubd -----------------------------------------------------------------------------------


class _Tasks:
    def __init__(self) -> None:
        self.tasks: list[asyncio.Task[Any]] = []

    def spawn(self, name: str, coro: Any, *, forever: bool = True) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self.tasks.append(task)
        return task


def _admin(server: str, sql: str) -> None:
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


async def run_reporthubd(shape: str, n: int, window: float, server: str) -> dict[str, Any]:
    import sqlalchemy as sa

    from reporthubd.config import Settings, StoreSettings
    from reporthubd.scheduler.loop import Scheduler
    from reporthubd.scheduler.stats import Lateness
    from reporthubd.store import migrate, schema
    from reporthubd.store.database import Store

    name = f"rh_bench_{secrets.token_hex(4)}"
    _admin(server, f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    store = Store(StoreSettings(url=f"{server.rstrip('/')}/{name}", pool_size=5))
    await store.start()
    try:
        await migrate.upgrade(store)
        async with store.engine.begin() as conn:
            ds = await conn.execute(
                sa.insert(schema.datasources).values(
                    name="bench", type="sqlite", connection_config={"path": ":memory:"}
                )
            )
            config = await conn.execute(
                sa.insert(schema.configs).values(
                    name="bench",
                    datasource_id=ds.inserted_primary_key[0],
                    query_text="SELECT 1",
                    output_format="csv",
                )
            )
            config_id = config.inserted_primary_key[0]
            rows = [
                {"config_id": config_id, "cron_expression": e, "timezone": z}
                for e, z in schedules(shape, n)
            ]
            for start in range(0, len(rows), 5000):
                await conn.execute(sa.insert(schema.schedules), rows[start : start + 5000])
        floor = await _select_floor(server, name) if shape == "fleet" else {}
        steps = _time_steps() if shape == "sparse" else {}
        submitted = 0

        def submit(execution_id: str) -> None:
            nonlocal submitted
            submitted += 1

        tasks = _Tasks()
        scheduler = Scheduler(store=store, settings=Settings(), node_id="bench", submit=submit)
        rss0, c0, t0 = rss_mb(), cpu(), time.perf_counter()
        await scheduler.start(tasks)
        load_s, load_cpu = time.perf_counter() - t0, cpu() - c0
        rss_setup = rss_mb()
        await align()
        scheduler.lateness = Lateness()
        steps_at_start = dict(steps)
        c1, t1, w0 = cpu(), time.perf_counter(), time.time()
        await asyncio.sleep(window)
        c2, t2, w1 = cpu(), time.perf_counter(), time.time()
        spent = _steps_spent(steps, steps_at_start)
        stats = scheduler.lateness.summary()
        await scheduler.stop()
        for task in tasks.tasks:
            task.cancel()
        await asyncio.gather(*tasks.tasks, return_exceptions=True)
        fires = int(stats["fires"] or 0)
        return {
            "load_s": round(load_s, 2),
            "load_cpu_s": round(load_cpu, 2),
            **floor,
            **{
                f"{step}_ms_per_fire": round(cpu_s * 1000 / max(1, fires), 4)
                for step, cpu_s in spent.items()
            },
            "rss_start_mb": round(rss0, 1),
            "rss_after_load_mb": round(rss_setup, 1),
            "rss_added_by_load_mb": round(rss_setup - rss0, 1),
            "window_s": round(t2 - t1, 1),
            "minute_boundaries": int(w1 // 60) - int(w0 // 60),
            "window_cpu_s": round(c2 - c1, 2),
            "cpu_ms_per_fire": round((c2 - c1) * 1000 / max(1, fires), 4),
            **stats,
            "timelines": len(scheduler.timetable.timelines),
        }
    finally:
        await store.stop()
        _admin(server, f"DROP DATABASE IF EXISTS `{name}`")


async def _select_floor(server: str, name: str) -> dict[str, float]:
    """The load's floor, measured before the load in the same process: the bare SELECT of the
    columns reporthubd reads (definitions._read_schedules), every row decoded by the driver
    (aiomysql, PyMySQL's text protocol) and nothing else done with it."""
    import aiomysql

    from reporthubd.store import definitions, schema

    columns = ", ".join(
        c.name for c in schema.schedules.c if c.name not in definitions._SCHEDULE_UNUSED
    )
    parts = urlsplit(server)
    conn = await aiomysql.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=parts.username or "root",
        password=parts.password or "",
        db=name,
    )
    try:
        c0, t0 = cpu(), time.perf_counter()
        async with conn.cursor() as cursor:
            await cursor.execute(
                f"SELECT {columns} FROM report_schedules WHERE is_active = 1 ORDER BY id"
            )
            await cursor.fetchall()
        return {
            "select_floor_s": round(time.perf_counter() - t0, 2),
            "select_floor_cpu_s": round(cpu() - c0, 2),
        }
    finally:
        conn.close()


def _time_steps() -> dict[str, float]:
    """CPU seconds spent in each step of a fire (claim, the rest of the dispatch, the sweep,
    the definitions fingerprint), by wrapping those calls in this process; the dict fills in
    as the scheduler runs. The wrappers cost a few microseconds per call."""
    from reporthubd.scheduler import dispatch, recovery
    from reporthubd.store import claims, definitions

    spent = {"claim": 0.0, "dispatch_rest": 0.0, "sweep": 0.0, "fingerprint": 0.0}

    def timed(step: str, fn: Any) -> Any:
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            c0 = time.process_time()
            try:
                return await fn(*args, **kwargs)
            finally:
                spent[step] += time.process_time() - c0

        return wrapper

    claim = claims.claim_prepared
    claims.claim_prepared = timed("claim", claim)  # type: ignore[assignment]
    dispatch.Dispatcher.dispatch = timed("dispatch_rest", dispatch.Dispatcher.dispatch)  # type: ignore[method-assign]
    recovery.Recovery.sweep = timed("sweep", recovery.Recovery.sweep)  # type: ignore[method-assign]
    definitions.fingerprint = timed("fingerprint", definitions.fingerprint)  # type: ignore[assignment]
    return spent


def _steps_spent(steps: dict[str, float], at_start: dict[str, float]) -> dict[str, float]:
    """Each step's CPU since `at_start`; the dispatch's own less its claims."""
    out = {step: spent - at_start[step] for step, spent in steps.items()}
    if out:
        out["dispatch_rest"] -= out["claim"]
    return out


# -- APScheduler 3 --------------------------------------------------------------------------------

LAT: list[float] = []


async def _minute_job() -> None:
    now = time.time()
    LAT.append((now - (now // 60) * 60) * 1000)


async def _second_job() -> None:
    now = time.time()
    LAT.append((now - int(now)) * 1000)


async def run_apscheduler(shape: str, n: int, window: float, _server: str) -> dict[str, Any]:
    from zoneinfo import ZoneInfo

    from apscheduler.schedulers.asyncio import AsyncIOScheduler
    from apscheduler.triggers.cron import CronTrigger

    zones = {z: ZoneInfo(z) for z in ZONES}
    rss0, c0, t0 = rss_mb(), cpu(), time.perf_counter()
    sch = AsyncIOScheduler(
        timezone=zones["UTC"],
        job_defaults={"misfire_grace_time": 30, "coalesce": True, "max_instances": 1},
    )
    for i, (expr, zone) in enumerate(schedules(shape, n)):
        if shape == "sparse":
            second, minute = expr.split()[:2]
            trigger = CronTrigger(second=second, minute=minute, timezone=zones[zone])
            sch.add_job(_second_job, trigger, id=str(i))
        else:
            trigger = CronTrigger.from_crontab(expr, timezone=zones[zone])
            sch.add_job(_minute_job, trigger, id=str(i))
    sch.start()
    load_s, load_cpu = time.perf_counter() - t0, cpu() - c0
    rss_setup = rss_mb()
    await align()
    LAT.clear()
    c1, t1, w0 = cpu(), time.perf_counter(), time.time()
    await asyncio.sleep(window)
    c2, t2, w1 = cpu(), time.perf_counter(), time.time()
    stats = percentiles(list(LAT))
    sch.shutdown(wait=False)
    fires = int(stats["fires"] or 0)
    return {
        "load_s": round(load_s, 2),
        "load_cpu_s": round(load_cpu, 2),
        "rss_start_mb": round(rss0, 1),
        "rss_after_load_mb": round(rss_setup, 1),
        "rss_added_by_load_mb": round(rss_setup - rss0, 1),
        "window_s": round(t2 - t1, 1),
        "minute_boundaries": int(w1 // 60) - int(w0 // 60),
        "window_cpu_s": round(c2 - c1, 2),
        "cpu_ms_per_fire": round((c2 - c1) * 1000 / max(1, fires), 4),
        **stats,
    }


# -- the floor: one store round trip per fire, nothing else ----------------------------------------


async def run_floor(shape: str, n: int, window: float, server: str) -> dict[str, Any]:
    """What a durable claim costs at the least in this process model (asyncio + aiomysql): at
    every second, one INSERT IGNORE of the fire's row and a COMMIT, in one round trip, on one
    raw connection kept open; no pool, no bookkeeping, no sweep. Sparse shape only (one fire
    a second), where it is the lower bound for reporthubd's CPU per fire."""
    import aiomysql

    if shape != "sparse":
        raise SystemExit("the floor method measures the sparse shape only")
    name = f"rh_bench_{secrets.token_hex(4)}"
    _admin(server, f"CREATE DATABASE `{name}`")
    parts = urlsplit(server)
    conn = await aiomysql.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=parts.username or "root",
        password=parts.password or "",
        db=name,
        autocommit=False,
    )
    try:
        cursor = await conn.cursor()
        await cursor.execute(
            "CREATE TABLE fires (id CHAR(36) PRIMARY KEY, schedule_id INT NOT NULL, "
            "scheduled_for DATETIME(6) NOT NULL, node_id VARCHAR(100), "
            "UNIQUE (schedule_id, scheduled_for))"
        )
        rss_setup = rss_mb()
        await align()
        lat: list[float] = []
        c1, t1, w0 = cpu(), time.perf_counter(), time.time()
        end = time.time() + window
        while True:
            due = int(time.time()) + 1
            if due > end:
                await asyncio.sleep(max(0.0, end - time.time()))
                break
            await asyncio.sleep(due - time.time())
            fire = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(due))
            await cursor.execute(
                "INSERT IGNORE INTO fires VALUES (%s, %s, %s, %s); COMMIT",
                (str(uuid.uuid4()), due % 1000, fire, "bench"),
            )
            while await cursor.nextset():
                pass
            lat.append((time.time() - due) * 1000)
        c2, t2, w1 = cpu(), time.perf_counter(), time.time()
    finally:
        conn.close()
        _admin(server, f"DROP DATABASE IF EXISTS `{name}`")
    stats = percentiles(lat)
    fires = int(stats["fires"] or 0)
    return {
        "load_s": 0.0,
        "rss_after_load_mb": round(rss_setup, 1),
        "window_s": round(t2 - t1, 1),
        "minute_boundaries": int(w1 // 60) - int(w0 // 60),
        "window_cpu_s": round(c2 - c1, 2),
        "cpu_ms_per_fire": round((c2 - c1) * 1000 / max(1, fires), 4),
        **stats,
    }


METHODS = {"reporthubd": run_reporthubd, "apscheduler": run_apscheduler, "floor": run_floor}
ROWS = [
    "load_s",
    "load_cpu_s",
    "select_floor_s",
    "select_floor_cpu_s",
    "claim_ms_per_fire",
    "dispatch_rest_ms_per_fire",
    "sweep_ms_per_fire",
    "fingerprint_ms_per_fire",
    "rss_after_load_mb",
    "rss_added_by_load_mb",
    "window_s",
    "minute_boundaries",
    "window_cpu_s",
    "fires",
    "cpu_ms_per_fire",
    "p50_ms",
    "p99_ms",
    "max_ms",
]


def worker(method: str, shape: str, n: int, window: float, server: str) -> None:
    import logging

    logging.disable(logging.WARNING)
    result = asyncio.run(METHODS[method](shape, n, window, server))
    print(json.dumps({"method": method, "shape": shape, "n": n, **result}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=float, default=125.0)
    parser.add_argument("--runs", default="sparse:1000,burst:10000,mix:10000,mix:100000")
    parser.add_argument("--methods", default="reporthubd,apscheduler,floor")
    parser.add_argument("--mariadb", default="mysql://root@127.0.0.1:3306")
    parser.add_argument("--worker", nargs=3, metavar=("METHOD", "SHAPE", "N"))
    args = parser.parse_args()
    if args.worker:
        method, shape, n = args.worker
        worker(method, shape, int(n), args.window, args.mariadb)
        return
    results: list[dict[str, Any]] = []
    for run in args.runs.split(","):
        shape, n = run.split(":")
        for method in args.methods.split(","):
            if method == "floor" and shape != "sparse":
                continue  # the floor is the sparse shape's lower bound only
            print(f"# {method} {shape} N={n} ...", file=sys.stderr, flush=True)
            cmd = [
                sys.executable,
                str(Path(__file__).resolve()),
                "--worker",
                method,
                shape,
                n,
                "--window",
                str(args.window),
                "--mariadb",
                args.mariadb,
            ]
            env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
            out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
            line = out.stdout.strip().splitlines()[-1:] if out.stdout.strip() else []
            if out.returncode != 0 or not line:
                print(out.stderr[-3000:], file=sys.stderr)
                continue
            record = json.loads(line[0])
            print(json.dumps(record), file=sys.stderr, flush=True)
            results.append(record)
    report(results)


def report(results: list[dict[str, Any]]) -> None:
    """One table per (shape, N): a column per method, then the first method's ratio to each
    of the others."""
    runs: dict[tuple[str, int], dict[str, dict[str, Any]]] = {}
    for r in results:
        runs.setdefault((r["shape"], r["n"]), {})[r["method"]] = r
    for (shape, n), by_method in runs.items():
        methods = list(by_method)
        first, others = methods[0], methods[1:]
        print(f"\n## {shape}, N={n}\n")
        columns = [*methods, *(f"{first} / {other}" for other in others)]
        print("| metric | " + " | ".join(columns) + " |")
        print("|---" * (len(columns) + 1) + "|")
        for key in ROWS:
            values = [by_method[m].get(key) for m in methods]
            cells = ["" if v is None else str(v) for v in values]
            a = values[0]
            for b in values[1:]:
                if isinstance(a, int | float) and isinstance(b, int | float) and b:
                    cells.append(f"{a / b:.2f}")
                else:
                    cells.append("")
            print(f"| {key} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
