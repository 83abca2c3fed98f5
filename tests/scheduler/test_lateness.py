"""Lateness tells the truth after a restart (issue 21, item 2): a real `reporthubd run` over a
store whose schedules missed fires while no daemon ran catches them up, and the catch-up fires
are reported apart from the on-time ones in GET /api/scheduler/status, in /metrics and on the
status page. Before, one restart showed "fire lateness p50 70 s" for an on-time scheduler."""

from __future__ import annotations

import asyncio
import re
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from reporthubd.config import StoreSettings
from reporthubd.scheduler import stats
from reporthubd.scheduler.misfire import ON_TIME_SECONDS
from reporthubd.store import migrate
from reporthubd.store.database import Store
from tests.scheduler.helpers import add_schedule, seed_config
from tests.scheduler.nodes import Node

ON_TIME_MS = ON_TIME_SECONDS * 1000


def test_buckets_of_the_catch_up_histogram_are_seconds() -> None:
    late = stats.catch_up()
    for seconds in (61.2, 62.7, 125.0, 3 * 86400):
        late.add(seconds)
    assert late.percentile(50) == 63_000  # the upper edge of 62.7 s's one-second bucket
    assert late.summary()["max_ms"] == 3 * 86400 * 1000  # beyond the last bucket: max exact
    assert late.percentile(100) == 3 * 86400 * 1000
    quick = stats.on_time()
    quick.add(0.0123)
    assert quick.summary() == {"fires": 1, "p50_ms": 12.3, "p99_ms": 12.3, "max_ms": 12.3}


def _get(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as answer:
        return str(answer.read().decode("utf-8"))


def _metric(exposition: str, name: str) -> float:
    found = re.search(rf"^{re.escape(name)} (\S+)$", exposition, re.M)
    assert found, f"{name} not in /metrics"
    return float(found.group(1))


async def test_catch_up_after_downtime_is_reported_apart_from_on_time_fires(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = Store(StoreSettings(url=url))
    await store.start()
    await migrate.upgrade(store)
    now = datetime.now(UTC)
    minute = now.replace(second=0, microsecond=0)
    try:
        config_id = await seed_config(store, path=str(tmp_path / "src.db"))
        # The store as a daemon stopped three minutes ago left it: each schedule's last fire.
        await add_schedule(
            store,
            config_id,
            "* * * * *",
            misfire_policy="run_all",
            misfire_grace_seconds=600,
            last_run_at=minute - timedelta(minutes=3),
        )
        await add_schedule(
            store,
            config_id,
            "* * * * * *",  # every second: its on-time fires come while the test watches
            misfire_policy="run_once",
            misfire_grace_seconds=600,
            last_run_at=now - timedelta(seconds=30),
        )
    finally:
        await store.stop()

    node = Node(tmp_path / "n", url, "node-late")
    try:
        await node.ready()
        status: dict[str, Any] = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status = (await asyncio.to_thread(node.request, "GET", "/api/scheduler/status"))["data"]
            if status["fire_lateness"]["fires"] >= 3:
                break
            await asyncio.sleep(0.2)
        on_time, catch_up = status["fire_lateness"], status["catch_up_lateness"]
        # Every fire due before the start is a catch-up fire: run_all's three minutes missed,
        # the per-second schedule's latest missed fire (run_once) and its fires of the last
        # seconds before the start (on time by the misfire rules, but not the scheduler's).
        assert catch_up["fires"] >= 4, status
        assert catch_up["max_ms"] >= 120_000, catch_up  # the first minute missed
        assert on_time["fires"] >= 3, status
        assert on_time["p99_ms"] < ON_TIME_MS, on_time  # tens of ms, in practice

        exposition = await asyncio.to_thread(_get, node.port, "/metrics")
        caught = "reporthubd_catch_up_fire_lateness_seconds"
        assert _metric(exposition, f"{caught}_count") == catch_up["fires"]
        assert _metric(exposition, f'{caught}_bucket{{le="60.0"}}') < catch_up["fires"]
        assert _metric(exposition, f"{caught}_sum") >= 120
        prompt = "reporthubd_fire_lateness_seconds"
        assert _metric(exposition, f"{prompt}_count") >= on_time["fires"]
        assert _metric(exposition, f'{prompt}_bucket{{le="60.0"}}') == _metric(
            exposition, f"{prompt}_count"
        )  # no catch-up fire of a minute or more among the on-time ones

        page = await asyncio.to_thread(_get, node.port, "/")
        line = re.search(r'<p class="meta" id="lateness">([^<]*)</p>', page)
        assert line, page
        assert "fire lateness (on time) p50 " in line.group(1)
        assert re.search(r"caught up after downtime: \d+ fires", line.group(1)), line.group(1)
    finally:
        node.stop()
