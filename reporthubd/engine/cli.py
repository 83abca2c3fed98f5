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
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reporthubd import domain
from reporthubd.config import Settings

EXIT_OK = 0
EXIT_PROBLEM = 1
EXIT_USAGE = 2


def add_parser(
    sub: Any, with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser]
) -> None:
    parser = with_config(
        sub.add_parser(
            "execute", help="run one report now, in the foreground, and say where the file is"
        )
    )
    parser.add_argument("config_id", type=int, help="report_configs.id")
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a parameter (repeatable); VALUE may be a template such as {{ yesterday }}",
    )
    parser.add_argument(
        "--no-deliver", action="store_true", help="produce the file, send it nowhere"
    )
    parser.add_argument("--output", metavar="PATH", help="also copy the produced file to PATH")
    parser.add_argument(
        "--json", action="store_true", help="print the final execution record as JSON"
    )


def parse_params(items: list[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--param {item!r}: expected NAME=VALUE")
        values[name.strip()] = value
    return values


async def main(args: argparse.Namespace, settings: Settings) -> int:
    from reporthubd.control.executions import execution_data
    from reporthubd.engine import Engine, UnknownConfig
    from reporthubd.store import executions, migrate
    from reporthubd.store.database import Store, StoreUnavailable

    try:
        overrides = parse_params(args.param)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    store = Store(settings.store)
    await store.start()
    try:
        try:
            await store.ping(limit_seconds=settings.store.connect_timeout_seconds)
            state = await migrate.schema_state(store)
        except StoreUnavailable as exc:
            print(exc, file=sys.stderr)
            return EXIT_PROBLEM
        if problem := state.problem():
            print(f"store {store.location}: {problem}", file=sys.stderr)
            return EXIT_PROBLEM
        node_id = settings.scheduler.effective_node_id
        deliveries = None
        if not args.no_deliver:
            from reporthubd.engine.ledger import DeliveryLedger

            deliveries = DeliveryLedger(settings, store, node_id=node_id)
        engine = Engine(settings, store, node_id=node_id, deliveries=deliveries)
        await engine.start()
        # Heartbeat like a daemon, so a daemon sharing the store does not take this run for
        # one of a lost node.
        await executions.register_node(store, node_id)
        beating = asyncio.create_task(
            _heartbeat(store, node_id, settings.scheduler.heartbeat_interval_seconds),
            name="execute-heartbeat",
        )
        try:
            try:
                execution_id = await engine.create_and_submit(
                    args.config_id,
                    trigger_type=domain.TriggerType.MANUAL,
                    parameters=overrides,
                    deliver=not args.no_deliver,
                )
            except UnknownConfig as exc:
                print(exc, file=sys.stderr)
                return EXIT_PROBLEM
            await _follow(engine, execution_id, show=sys.stderr.isatty() and not args.json)
        finally:
            beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beating
            await engine.stop()
        execution = await executions.get_execution(store, execution_id)
    finally:
        await store.stop()
    assert execution is not None
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


async def _heartbeat(store: Any, node_id: str, interval: float) -> None:
    from reporthubd.store import executions

    while True:
        await asyncio.sleep(interval)
        with contextlib.suppress(Exception):  # a store hiccup: try again next time
            await executions.heartbeat_node(store, node_id)


async def _follow(engine: Any, execution_id: str, *, show: bool) -> None:
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
