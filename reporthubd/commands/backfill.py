"""`reporthubd backfill SCHEDULE_ID --from T1 --to T2 [--reprocess none|failed|all] [--dry-run]
[--no-deliver] [--concurrency N]` and `reporthubd backfill-cancel BACKFILL_ID`.

The request is checked and planned here (scheduler/backfill.py has the rules) and recorded in
the store, as POST /api/schedules/{id}/backfill does it; the running daemons take it on (one at
a time, under a lease: scheduler/backfill_runner.py). The command then follows its progress
(done, total, failed) until it ends: on a terminal as one line rewritten in place, otherwise a
line per change. Interrupting the command does not stop the backfill: `backfill-cancel` does.
Exit code 0 when every fire completed, 1 when some failed, the backfill was cancelled, or no
daemon runs to take it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime, timedelta
from typing import TextIO

from reporthubd import bootstrap
from reporthubd.commands import EXIT_OK, EXIT_PROBLEM, EXIT_USAGE
from reporthubd.commands.pause import default_by
from reporthubd.config import Settings
from reporthubd.scheduler import backfill
from reporthubd.store import backfills
from reporthubd.store.database import Store

FOLLOW_SECONDS = 1.0


async def main(args: argparse.Namespace, settings: Settings) -> int:
    try:
        async with bootstrap.open_store(settings) as opened:
            if args.command == "backfill-cancel":
                return await _cancel(opened.store, args)
            return await _backfill(opened.store, settings, args)
    except bootstrap.StoreRefused as exc:
        print(exc, file=sys.stderr)
        return EXIT_PROBLEM


async def _cancel(store: Store, args: argparse.Namespace) -> int:
    try:
        found = await backfills.cancel(store, args.backfill_id, by=args.by or default_by())
    except (backfills.UnknownBackfill, backfills.BackfillConflict) as exc:
        print(exc, file=sys.stderr)
        return EXIT_PROBLEM
    print(f"backfill {found.id} cancelled by {found.cancelled_by}: no more fires start")
    return EXIT_OK


async def _backfill(store: Store, settings: Settings, args: argparse.Namespace) -> int:
    body: dict[str, object] = {
        "from": args.range_from,
        "to": args.range_to,
        "reprocess": args.reprocess,
        "dry_run": args.dry_run,
        "deliver": not args.no_deliver,
        "concurrency": args.concurrency,
        "by": args.by or default_by(),
    }
    try:
        requested = await backfill.request(store, settings, args.schedule_id, body)
    except backfills.UnknownSchedule as exc:
        print(exc, file=sys.stderr)
        return EXIT_PROBLEM
    except backfills.BackfillConflict as exc:
        print(exc, file=sys.stderr)
        return EXIT_PROBLEM
    except ValueError as exc:  # BackfillError included: names the key
        print(_as_option(str(exc)), file=sys.stderr)
        return EXIT_USAGE
    if args.json and (args.dry_run or args.no_wait or requested.backfill_id is None):
        print(json.dumps(requested.as_json()))
        return EXIT_OK
    if not args.json:
        _print_plan(requested, sys.stdout)
    if requested.backfill_id is None or args.no_wait:
        return EXIT_OK
    lost_after = settings.scheduler.node_lost_after_seconds
    since = datetime.now(UTC) - timedelta(seconds=lost_after)
    if not await backfills.live_nodes(store, since=since):
        print(
            "no reporthubd daemon is running on this store: the backfill starts when one does",
            file=sys.stderr,
        )
        return EXIT_PROBLEM
    return await _follow(store, requested.backfill_id, json_out=args.json)


def _as_option(message: str) -> str:
    """'from: ...' reads '--from: ...' on the command line."""
    for key in ("from", "to", "reprocess", "concurrency"):
        if message.startswith(f"{key}: "):
            return f"--{message}"
    return message


def _print_plan(requested: backfill.Requested, out: TextIO) -> None:
    planned = requested.plan
    runs = planned.to_run
    head = "would run" if requested.dry_run else "runs"
    print(
        f"backfill of schedule {planned.schedule_id} from {planned.range_from.isoformat()} "
        f"to {planned.range_to.isoformat()} (exclusive"
        + (", cut to now" if planned.clipped_to_now else "")
        + f"), reprocess {planned.reprocess.value}: {head} {len(runs)} of "
        f"{len(planned.fires)} fires",
        file=out,
    )
    for fire in planned.fires:
        mark = "run " if fire.run else "keep"
        shift = f" [{fire.shift}]" if fire.shift else ""
        print(f"  {mark} {fire.local}  {fire.reason}{shift}", file=out)
    if requested.backfill_id is not None:
        print(f"backfill {requested.backfill_id} recorded; a daemon takes it on", file=out)


async def _follow(store: Store, backfill_id: str, *, json_out: bool) -> int:
    tty = sys.stdout.isatty() and not json_out
    last = None
    try:
        while True:
            state = await backfills.progress(store, backfill_id)
            b = state.backfill
            line = (
                f"backfill {backfill_id}: {state.done}/{b.total} done, {state.failed} failed, "
                f"{state.running} running, {b.status}"
            )
            if line != last and not json_out:
                print(("\r" + line) if tty else line, end="" if tty else "\n", flush=True)
                last = line
            if b.status not in backfills.OPEN:
                if tty:
                    print()
                if json_out:
                    print(json.dumps(state.as_json()))
                ok = b.status == backfills.COMPLETED and state.failed == 0
                return EXIT_OK if ok else EXIT_PROBLEM
            await asyncio.sleep(FOLLOW_SECONDS)
    except (KeyboardInterrupt, asyncio.CancelledError):
        print(
            f"\nstopped following; backfill {backfill_id} goes on "
            f"(reporthubd backfill-cancel {backfill_id} stops it)",
            file=sys.stderr,
        )
        return EXIT_PROBLEM
