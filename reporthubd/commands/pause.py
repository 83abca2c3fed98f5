"""`reporthubd pause SCHEDULE_ID --reason WHY [--by WHO]` and `reporthubd resume SCHEDULE_ID
[--by WHO]`: the store's write (store/pauses.py), as POST /api/schedules/{id}/pause and /resume
do it. Running daemons pick the change up on their definitions watcher
(`scheduler.reload_interval_seconds`); `--by` defaults to the user running the command."""

from __future__ import annotations

import argparse
import getpass
import json
import socket
import sys

from reporthubd import bootstrap
from reporthubd.commands import EXIT_OK, EXIT_PROBLEM, EXIT_USAGE
from reporthubd.config import Settings
from reporthubd.store import pauses


def default_by() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


async def main(args: argparse.Namespace, settings: Settings) -> int:
    by = args.by or default_by()
    try:
        async with bootstrap.open_store(settings) as opened:
            if args.command == "pause":
                found = await pauses.pause(
                    opened.store, args.schedule_id, by=by, reason=args.reason
                )
            else:
                found = await pauses.resume(opened.store, args.schedule_id, by=by)
    except bootstrap.StoreRefused as exc:
        print(exc, file=sys.stderr)
        return EXIT_PROBLEM
    except (pauses.UnknownSchedule, pauses.PauseConflict) as exc:
        print(exc, file=sys.stderr)
        return EXIT_PROBLEM
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        print(json.dumps(found.as_json()))
    elif found.paused:
        print(
            f"schedule {found.schedule_id} paused by {found.paused_by} since "
            f"{found.paused_at.isoformat() if found.paused_at else '?'}: {found.paused_reason}"
        )
    else:
        print(
            f"schedule {found.schedule_id} resumed by {found.resumed_by} at "
            f"{found.resumed_at.isoformat() if found.resumed_at else '?'}"
        )
    return EXIT_OK
