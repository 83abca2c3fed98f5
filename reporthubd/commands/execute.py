"""`reporthubd execute CONFIG_ID [--param k=v ...] [--no-deliver] [--output PATH] [--json]`.

Runs one report in the foreground against the configured store (the same pipeline as the
daemon: an execution row is written), showing rows, rows/s and elapsed time on a TTY, then prints
the execution id, its final status and where the file is (or, with `--json`, the execution record).
Exit code 0 only when the execution COMPLETED. Ctrl-C cancels the run (the query is stopped on the
server) and records it CANCELLED.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

from reporthubd import bootstrap, domain
from reporthubd.commands import EXIT_OK, EXIT_PROBLEM, EXIT_USAGE
from reporthubd.config import Settings
from reporthubd.domain import execution_data
from reporthubd.engine.engine import Engine, UnknownConfig
from reporthubd.engine.ledger import DeliveryLedger
from reporthubd.lifecycle.executions import Lifecycle
from reporthubd.lifecycle.nodes import Node
from reporthubd.store import executions
from reporthubd.store.database import Store


def parse_params(items: list[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--param {item!r}: expected NAME=VALUE")
        values[name.strip()] = value
    return values


async def main(args: argparse.Namespace, settings: Settings) -> int:
    try:
        overrides = parse_params(args.param)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    try:
        async with bootstrap.open_store(settings) as opened:
            execution = await _run(args, settings, opened.store, overrides)
    except (bootstrap.StoreRefused, UnknownConfig) as exc:
        print(exc, file=sys.stderr)
        return EXIT_PROBLEM
    copied = None
    if args.output and execution.file_path:
        copied = Path(args.output)
        await asyncio.to_thread(shutil.copyfile, execution.file_path, copied)
    if args.json:
        data = execution_data(execution)
        if copied is not None:
            data["output"] = str(copied)
        print(json.dumps(data, indent=2, default=str))
    else:
        print(f"execution {execution.id}: {execution.status.value}")
        if execution.row_count is not None:
            print(f"rows: {execution.row_count}")
        if execution.file_path:
            print(f"file: {execution.file_path} ({execution.file_size} bytes)")
        if copied is not None:
            print(f"copied to: {copied}")
        if execution.error_message:
            print(f"error: {execution.error_message}")
        if execution.status is domain.ExecutionStatus.RUNNING:
            print("deliveries are waiting for a retry; the daemon will make them")
    return EXIT_OK if execution.status is domain.ExecutionStatus.COMPLETED else EXIT_PROBLEM


async def _run(
    args: argparse.Namespace, settings: Settings, store: Store, overrides: dict[str, str]
) -> domain.Execution:
    """Run the report to its end on an engine of our own; UnknownConfig for a config id that
    is not in the store."""
    node_id = settings.scheduler.effective_node_id
    lifecycle = Lifecycle(store, node_id=node_id)
    deliveries = (
        None
        if args.no_deliver
        else DeliveryLedger(settings, store, node_id=node_id, lifecycle=lifecycle)
    )
    engine = Engine(settings, store, node_id=node_id, deliveries=deliveries, lifecycle=lifecycle)
    await engine.start()
    beating: asyncio.Task[None] | None = None
    try:
        # Heartbeat like a daemon, so a daemon sharing the store does not take this run for one
        # of a lost node (and this run is stopped if one did: fencing).
        node = Node(store, settings.scheduler, node_id=node_id, ownership=engine.ownership)
        await node.register()
        beating = asyncio.create_task(node.run_heartbeats(), name="execute-heartbeat")
        execution_id = await engine.create_and_submit(
            args.config_id,
            trigger_type=domain.TriggerType.MANUAL,
            parameters=overrides,
            deliver=not args.no_deliver,
        )
        await _follow(engine, execution_id, show=sys.stderr.isatty() and not args.json)
    finally:
        if beating is not None:
            beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beating
        await engine.stop()
    execution = await executions.get_execution(store, execution_id)
    assert execution is not None  # written before create_and_submit returned
    return execution


async def _follow(engine: Engine, execution_id: str, *, show: bool) -> None:
    task = engine.task(execution_id)
    if task is None:
        return
    loop = asyncio.get_running_loop()

    cancels: list[asyncio.Task[Any]] = []

    def interrupt() -> None:
        cancels.append(
            loop.create_task(
                engine.cancel(execution_id, "cancelled from the command line (Ctrl-C)"),
                name=f"cancel-{execution_id}",
            )
        )

    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGINT, interrupt)
    try:
        while not task.done():
            await asyncio.wait({task}, timeout=0.5)
            progress = engine.progress(execution_id)
            if show and progress is not None and progress.started is not None:
                elapsed = progress.elapsed()
                rate = progress.rows / elapsed if elapsed > 0 else 0.0
                sys.stderr.write(
                    f"\r{progress.phase:<10} {progress.rows:>12,} rows  {rate:>10,.0f} rows/s  "
                    f"{elapsed:7.1f} s"
                )
                sys.stderr.flush()
        if show:
            sys.stderr.write("\n")
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGINT)
