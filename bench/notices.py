"""Notice latency and cost (issue 17): from a failing run's end to the notice arriving at a real
SMTP server (aiosmtpd in this process), p50/p99 over `--incidents` incidents (each report's
first failure is one incident), and the daemon's CPU per notice.

usage: .venv/bin/python bench/notices.py [--incidents 100]

One real `reporthubd run` subprocess on a SQLite store, run twice over fresh reports whose SQL
fails (no such table), each owned by an address the notices go to:

- baseline: notifications off ([notifications] enabled = false): the same failing runs, no
  notice. Its CPU is what the runs cost without notices.
- notices: notifications on. Latency = arrival at the SMTP server minus the run's finished_at
  (one clock: the same machine). CPU per notice = (CPU of this phase - CPU of the baseline) /
  notices.

Also printed, as a baseline of the transport itself: one aiosmtplib send from this process to
the same server (p50 over 20), so the notice pipeline's own share is the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import aiosmtplib
import psutil
import sqlalchemy as sa
from aiosmtpd.controller import Controller

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from reporthubd.config import StoreSettings
from reporthubd.store import migrate, schema
from reporthubd.store.database import Store
from tests import servers
from tests.daemon_process import DaemonProcess, write_config


@dataclass
class Inbox:
    arrivals: dict[str, float] = field(default_factory=dict)
    """execution id -> arrival (Unix seconds)."""
    plain: int = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        at = time.time()
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        body = message.get_body(preferencelist=("plain",))
        text = body.get_content() if body is not None else ""  # type: ignore[union-attr]
        run = next(
            (line[5:].strip() for line in text.splitlines() if line.startswith("Run: ")), None
        )
        if run:
            self.arrivals[run] = at
        else:
            self.plain += 1
        return "250 OK"


async def add_reports(store: Store, data: Path, count: int, prefix: str) -> list[int]:
    ids = []
    async with store.engine.begin() as conn:
        source = (
            await conn.execute(
                sa.insert(schema.datasources).values(
                    name=f"{prefix}-ds", type="sqlite", connection_config={"path": str(data)}
                )
            )
        ).inserted_primary_key[0]
        for n in range(count):
            inserted = await conn.execute(
                sa.insert(schema.configs).values(
                    name=f"{prefix}-{n}",
                    datasource_id=source,
                    query_text="SELECT * FROM sales",
                    output_format="csv",
                    notify={"owners": [f"owner{n}@example.com"]},
                )
            )
            ids.append(inserted.inserted_primary_key[0])
    return [int(i) for i in ids]


async def run_phase(
    root: Path, store_url: str, smtp_port: int, reports: list[int], enabled: bool
) -> tuple[float, DaemonProcess]:
    directory = root / ("on" if enabled else "off")
    directory.mkdir()
    config, port = write_config(
        directory,
        store_url,
        smtp={"host": "127.0.0.1", "port": smtp_port, "tls": "none"},
        notifications={"enabled": enabled, "poll_interval_seconds": 1.0},
        logging={"format": "json", "level": "WARNING"},
    )
    daemon = DaemonProcess(config)
    base = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as http:
        for _ in range(600):
            try:
                async with http.get(f"{base}/readyz") as answer:
                    if answer.status == 200:
                        break
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)  # start-up work is not the phase's
        process = psutil.Process(daemon.proc.pid)
        before = process.cpu_times()
        for config_id in reports:
            async with http.post(f"{base}/api/execute/{config_id}", json={}) as answer:
                assert answer.status in (200, 202), await answer.text()
            await asyncio.sleep(0.05)  # 20 incidents a second
    return before.user + before.system, daemon


async def finished(store: Store, reports: list[int]) -> dict[str, datetime]:
    e = schema.executions
    async with store.engine.connect() as conn:
        rows = (
            await conn.execute(
                sa.select(e.c.id, e.c.finished_at).where(
                    e.c.config_id.in_(reports), e.c.finished_at.is_not(None)
                )
            )
        ).all()
    return {row.id: row.finished_at for row in rows}


def cpu(daemon: DaemonProcess) -> float:
    times = psutil.Process(daemon.proc.pid).cpu_times()
    return times.user + times.system


async def stop(daemon: DaemonProcess) -> None:
    daemon.proc.terminate()
    await asyncio.to_thread(daemon.proc.wait, 30)
    daemon.stop()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--incidents", type=int, default=100)
    args = parser.parse_args()
    n = args.incidents
    root = Path(tempfile.mkdtemp(prefix="rh-bench-notices-"))
    data = root / "data.db"
    sqlite3.connect(data).close()
    store_url = f"sqlite:///{root}/store.db"
    store = Store(StoreSettings(url=store_url))
    await store.start()
    await migrate.upgrade(store)
    inbox = Inbox()
    smtp_port = servers.free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    try:
        transport = []
        for i in range(20):
            started = time.perf_counter()
            await aiosmtplib.send(
                f"Subject: ping {i}\n\nping\n",
                sender="bench@example.com",
                recipients=["owner@example.com"],
                hostname="127.0.0.1",
                port=smtp_port,
                start_tls=False,
            )
            transport.append(time.perf_counter() - started)

        off = await add_reports(store, data, n, "off")
        cpu_before, daemon = await run_phase(root, store_url, smtp_port, off, enabled=False)
        while len(await finished(store, off)) < n:  # noqa: ASYNC110 (the store is polled)
            await asyncio.sleep(0.2)
        await asyncio.sleep(2.0)  # what follows the runs (nothing, with notices off)
        baseline_cpu = cpu(daemon) - cpu_before
        await stop(daemon)

        on = await add_reports(store, data, n, "on")
        cpu_before, daemon = await run_phase(root, store_url, smtp_port, on, enabled=True)
        while len(inbox.arrivals) < n:  # noqa: ASYNC110 (filled in the SMTP server's thread)
            await asyncio.sleep(0.2)
        await asyncio.sleep(2.0)
        notices_cpu = cpu(daemon) - cpu_before
        await stop(daemon)
        ends = await finished(store, on)
    finally:
        controller.stop()
        await store.stop()
    latencies = [inbox.arrivals[run] - ends[run].timestamp() for run in inbox.arrivals]
    p50, p99 = pct(latencies, 0.5), pct(latencies, 0.99)
    base = statistics.median(transport)
    per_notice = (notices_cpu - baseline_cpu) / n
    print(f"incidents: {n} (one failing run each), notices received: {len(inbox.arrivals)}")
    print(
        f"notice latency, run end -> SMTP server: p50 {p50 * 1000:.1f} ms, "
        f"p99 {p99 * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms"
    )
    print(
        f"transport baseline (one aiosmtplib send from the bench): p50 {base * 1000:.1f} ms; "
        f"notice p50 / transport p50 = {p50 / base:.1f}x"
    )
    print(
        f"daemon CPU: {n} failing runs without notices {baseline_cpu:.2f} s, with notices "
        f"{notices_cpu:.2f} s; per notice {per_notice * 1000:.1f} ms "
        f"({notices_cpu / max(baseline_cpu, 1e-9):.2f}x the runs' own CPU)"
    )


if __name__ == "__main__":
    asyncio.run(main())
