"""`reporthubd backfill` and `backfill-cancel` on the command line, against a real daemon over a
SQLite store: the dry run's list, errors naming the option, progress on a terminal (a pty), the
exit codes, and a cancel that stops a backfill mid-way."""

from __future__ import annotations

import asyncio
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

from reporthubd.config import StoreSettings
from reporthubd.store import backfills, migrate
from reporthubd.store.database import Store
from tests.daemon_process import DaemonProcess, call, write_config
from tests.scheduler.helpers import add_schedule, executions, seed_config

SLOW = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 600000) "
    "SELECT max(x) AS n FROM c"
)


def _command(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reporthubd", *args, "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _on_a_terminal(config: Path, *args: str) -> tuple[int, str]:
    """Run the command with its standard output on a pseudo-terminal; (exit code, output)."""
    main, side = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "reporthubd", *args, "-c", str(config)],
        stdout=side,
        stderr=subprocess.STDOUT,
    )
    os.close(side)
    out = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([main], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(main, 4096)
            except OSError:  # the other side closed: the command ended
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    os.close(main)
    return proc.wait(30), out.decode()


async def test_backfill_from_the_command_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    store = Store(StoreSettings(url=url))
    await store.start()
    try:
        await migrate.upgrade(store)
        fast = await seed_config(store, "fast", path=str(tmp_path / "src.db"))
        slow = await seed_config(store, "slow", query=SLOW, path=str(tmp_path / "src.db"))
        quick_id = await add_schedule(
            store, fast, "0 7 * * *", timezone="Europe/Berlin", is_active=False
        )
        slow_id = await add_schedule(
            store, slow, "0 7 * * *", timezone="Europe/Berlin", is_active=False
        )
        config, port = write_config(
            tmp_path,
            url,
            scheduler={"heartbeat_interval_seconds": 0.5, "node_lost_after_seconds": 3.0},
        )
        daemon = DaemonProcess(config)
        try:
            for _ in range(300):
                try:
                    if call(port, "/healthz")[0] == 200:
                        break
                except OSError:
                    pass
                await asyncio.sleep(0.2)
            sid = str(quick_id)
            span = ("--from", "2026-03-01", "--to", "2026-03-10")
            dry = await asyncio.to_thread(_command, config, "backfill", sid, *span, "--dry-run")
            assert dry.returncode == 0, dry.stderr
            listed = [line.split()[1] for line in dry.stdout.splitlines() if "  run " in line]
            assert len(listed) == 10 and listed[0] == "2026-03-01T07:00:00+01:00"
            assert "would run 10 of 10 fires" in dry.stdout

            bad = await asyncio.to_thread(
                _command, config, "backfill", sid, "--from", "2026-03-10", "--to", "2026-03-01"
            )
            assert bad.returncode == 2 and bad.stderr.startswith("--from: 2026-03-09T23:00:00")
            assert "is after to" in bad.stderr
            bad = await asyncio.to_thread(
                _command, config, "backfill", sid, "--from", "2020-01-01", "--to", "2026-01-01"
            )
            assert bad.returncode == 2 and bad.stderr.startswith("--to: the range spans")
            bad = await asyncio.to_thread(_command, config, "backfill", "999", *span)
            assert bad.returncode == 1
            assert "schedule_id: no schedule 999 in report_schedules" in bad.stderr

            code, out = await asyncio.to_thread(_on_a_terminal, config, "backfill", sid, *span)
            assert code == 0, out
            assert "\r" in out and "10/10 done, 0 failed, 0 running, COMPLETED" in out
            ran = [
                row.scheduled_for.astimezone().isoformat()
                for row in await executions(store, quick_id)
                if row.status == "COMPLETED"
            ]
            assert len(ran) == 10
            again = await asyncio.to_thread(_command, config, "backfill", sid, *span)
            assert again.returncode == 0 and "runs 0 of 10 fires" in again.stdout

            started = await asyncio.to_thread(
                _command,
                config,
                "backfill",
                str(slow_id),
                "--from",
                "2026-02-01",
                "--to",
                "2026-02-28",
                "--no-wait",
                "--no-deliver",
            )
            assert started.returncode == 0, started.stderr
            backfill_id = started.stdout.split("backfill ")[-1].split()[0]
            for _ in range(300):
                if (await backfills.progress(store, backfill_id)).done >= 2:
                    break
                await asyncio.sleep(0.2)
            cancel = await asyncio.to_thread(_command, config, "backfill-cancel", backfill_id)
            assert cancel.returncode == 0 and "cancelled by" in cancel.stdout, cancel.stderr
            again = await asyncio.to_thread(_command, config, "backfill-cancel", backfill_id)
            assert again.returncode == 1 and "has already ended CANCELLED" in again.stderr
            for _ in range(300):
                state = await backfills.progress(store, backfill_id)
                if state.running == 0:
                    break
                await asyncio.sleep(0.2)
            assert state.backfill.status == "CANCELLED" and state.done < state.backfill.total
            rows = await executions(store, slow_id)
            assert len(rows) == state.done  # nothing started after the cancel went unfollowed
            status, answer = call(port, f"/api/backfills/{backfill_id}")
            assert status == 200 and answer["data"]["status"] == "CANCELLED"  # type: ignore[index]
        finally:
            daemon.stop()
    finally:
        await store.stop()
