"""Where the daemon's memory goes over time (issue 10, beside the soak): the real daemon run
in-process over a fresh MariaDB store, N schedules over small SQLite reports, and tracemalloc
snapshots after a warm-up and at the end; prints the traced total every minute and the call
sites that grew most.

usage: .venv/bin/python bench/memory_growth.py [--minutes 12] [--warmup 2] [--schedules 500]
                                               [--cron "0 * * * * *"] [--concurrency 10]
                                               [--mariadb mysql://root@127.0.0.1:3306]

tracemalloc slows the process two to three times: keep the load one it can sustain (the default
is the soak's, 500 runs a minute), or the growth shown is the queue of runs waiting for a slot.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import time
import tracemalloc
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))
sys.path.insert(0, str(ROOT))

import soak  # noqa: E402

from reporthubd import logs  # noqa: E402
from reporthubd.config import StoreSettings, load_settings  # noqa: E402
from reporthubd.daemon import Daemon  # noqa: E402
from reporthubd.store import schema  # noqa: E402
from reporthubd.store.database import Store  # noqa: E402


async def run(args: argparse.Namespace) -> None:
    work, data, name, url = soak.scratch("memory", args.mariadb)
    try:
        await soak.setup(url, data, args.schedules)
        store = Store(StoreSettings(url=url))
        await store.start()
        async with store.engine.begin() as conn:
            await conn.execute(sa.update(schema.schedules).values(cron_expression=args.cron))
        await store.stop()
        config, _ = soak.write_config(work, url, args.concurrency)
        settings = load_settings(config)
        logs.configure(settings.logging)
        daemon = Daemon(settings, config_path=config)
        task = asyncio.create_task(daemon.run(), name="daemon")
        tracemalloc.start(8)
        await asyncio.sleep(args.warmup * 60)
        gc.collect()
        first = tracemalloc.take_snapshot()
        print(f"after warm-up: traced {tracemalloc.get_traced_memory()[0] / 1e6:.1f} MB")
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < args.minutes * 60:
            await asyncio.sleep(min(60.0, args.minutes * 60 - elapsed))
            traced = tracemalloc.get_traced_memory()[0] / 1e6
            queued = daemon.engine.stats().queued if daemon.engine else -1
            print(f"{time.monotonic() - started:5.0f} s  traced {traced:6.1f} MB  queued {queued}")
        gc.collect()
        last = tracemalloc.take_snapshot()
        print("grew most (size, blocks, where):")
        for stat in last.compare_to(first, "traceback")[:10]:
            print(f"  {stat.size_diff / 1e3:+9.1f} kB {stat.count_diff:+7d}")
            for line in stat.traceback.format()[-6:]:
                print("     ", line)
        daemon.handle_sigterm()
        await task
    finally:
        soak.admin(args.mariadb, f"DROP DATABASE IF EXISTS `{name}`")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=12)
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--schedules", type=int, default=500)
    parser.add_argument("--cron", default="0 * * * * *")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--mariadb", default="mysql://root@127.0.0.1:3306")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
