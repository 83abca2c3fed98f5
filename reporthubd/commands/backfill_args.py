"""The command line of `reporthubd backfill` and `reporthubd backfill-cancel`
(commands/backfill.py runs them). Only argparse here: `reporthubd --help` loads nothing more."""

from __future__ import annotations

import argparse
from collections.abc import Callable

WithConfig = Callable[[argparse.ArgumentParser], argparse.ArgumentParser]


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], with_config: WithConfig
) -> None:
    """The two subcommands, on `sub` (cli.py's); `with_config` adds -c/--config."""
    run = with_config(
        sub.add_parser(
            "backfill", help="run a schedule's fires over a past range (each with its own time)"
        )
    )
    run.add_argument("schedule_id", type=int, help="report_schedules.id")
    run.add_argument(
        "--from",
        dest="range_from",
        required=True,
        metavar="T1",
        help="first day or instant (ISO; wall time in the schedule's zone)",
    )
    run.add_argument(
        "--to",
        dest="range_to",
        required=True,
        metavar="T2",
        help="last day (whole day) or instant (inclusive); cut to now",
    )
    run.add_argument(
        "--reprocess",
        choices=("none", "failed", "all"),
        default="none",
        help="none: fires that never ran (default); failed: also failed ones; all",
    )
    run.add_argument("--dry-run", action="store_true", help="list the fires it would run")
    run.add_argument("--no-deliver", action="store_true", help="produce files, send nothing")
    run.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="fires run at once (at most execution.max_concurrent_executions)",
    )
    run.add_argument("--by", help="who asks (default: USER@HOST)")
    run.add_argument("--no-wait", action="store_true", help="record it and return")
    run.add_argument("--json", action="store_true", help="print the plan / progress as JSON")
    cancel = with_config(sub.add_parser("backfill-cancel", help="stop a backfill"))
    cancel.add_argument("backfill_id", help="the id `reporthubd backfill` printed")
    cancel.add_argument("--by", help="who does it (default: USER@HOST)")
