"""`reporthubd next`: the next fire times of a stored schedule, or of an expression not (yet)
in the store, so a report author can check a schedule before saving it.

    reporthubd next SCHEDULE_ID [-n 10] [--json] [-c FILE]
    reporthubd next --cron EXPR [--tz ZONE] [--after ISO_TIME] [-n 10] [--json]
                    [--calendar NAME [--policy skip|next_business_day|previous_business_day]]

One fire per line: the UTC instant (ISO 8601) first, then the local time in the schedule's zone.
With --json, a JSON list of {"utc": ..., "local": ...}. A stored schedule with a business
calendar marks each fire its calendar decides: "SKIPPED (holiday: ...)", or "SHIFTED -> <local
time it runs> (holiday: ...)"; in JSON, "status" (run, skipped, shifted), "reason", and for a
shifted fire "runs_utc" / "runs_local". `--cron` with `--calendar NAME` follows a stored
(active) calendar the same way, under `--policy` (default next_business_day, as in the catalog).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

if TYPE_CHECKING:
    from reporthubd.calendars import Calendar, CalendarFires
    from reporthubd.config import Settings
    from reporthubd.cron import FireTimes

# The settings, cron and domain modules are imported in main(): the command line imports this
# module to build its parser, and `reporthubd version` and `--help` need neither pydantic nor
# croniter (tests/test_import_budget.py).

EXIT_OK, EXIT_PROBLEM, EXIT_USAGE = 0, 1, 2


def add_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser],
) -> None:
    p = with_config(sub.add_parser("next", help="print the next fire times of a schedule"))
    p.add_argument("schedule_id", nargs="?", type=int, help="a schedule in the store")
    p.add_argument("--cron", metavar="EXPR", help="an expression instead of a stored schedule")
    p.add_argument("--tz", metavar="ZONE", help="IANA zone for --cron (default: the config's)")
    p.add_argument("--after", metavar="ISO_TIME", help="start after this time (default: now)")
    p.add_argument("-n", type=int, default=10, help="how many fires (default 10)")
    p.add_argument("--json", action="store_true", help="a JSON list of {utc, local}")
    p.add_argument(
        "--calendar", metavar="NAME", help="with --cron: follow this stored business calendar"
    )
    p.add_argument(
        "--policy",
        choices=("skip", "next_business_day", "previous_business_day"),
        help="with --calendar: what a closed day does (default next_business_day)",
    )


def main(args: argparse.Namespace) -> int:
    from reporthubd.config import ConfigError, Settings, load_settings, resolve_config_path
    from reporthubd.cron import CronError, FireTimes, parse_cron

    if (args.schedule_id is None) == (args.cron is None):
        print("give either SCHEDULE_ID or --cron EXPR", file=sys.stderr)
        return EXIT_USAGE
    if args.calendar is not None and args.cron is None:
        print("--calendar: only with --cron (a stored schedule follows its own)", file=sys.stderr)
        return EXIT_USAGE
    if args.policy is not None and args.calendar is None:
        print("--policy: only with --calendar", file=sys.stderr)
        return EXIT_USAGE
    if not 1 <= args.n <= 100_000:
        print("-n must be 1..100000", file=sys.stderr)
        return EXIT_USAGE
    after = datetime.now(UTC)
    if args.after:
        try:
            after = datetime.fromisoformat(args.after)
        except ValueError:
            print(f"--after: not an ISO 8601 time: {args.after!r}", file=sys.stderr)
            return EXIT_USAGE
        if after.tzinfo is None:
            after = after.replace(tzinfo=UTC)
    try:
        settings = load_settings(resolve_config_path(args.config))
    except ConfigError as exc:
        if args.cron is None or args.tz is None or args.calendar is not None:
            print(exc, file=sys.stderr)
            return EXIT_USAGE
        settings = Settings()
    if args.cron is not None:
        try:
            spec = parse_cron(args.cron)
            zone = ZoneInfo(args.tz or settings.scheduler.timezone)
        except CronError as exc:
            print(exc, file=sys.stderr)
            return EXIT_PROBLEM
        except (ZoneInfoNotFoundError, ValueError):
            print(f"unknown IANA time zone {args.tz!r}", file=sys.stderr)
            return EXIT_PROBLEM
        plain = FireTimes(spec, zone)
        times: FireTimes | CalendarFires = plain
        if args.calendar is not None:
            from reporthubd.calendars import CalendarFires, CalendarPolicy

            calendar = asyncio.run(_calendar(settings, args.calendar))
            if isinstance(calendar, str):
                print(calendar, file=sys.stderr)
                return EXIT_PROBLEM
            policy = CalendarPolicy(args.policy or CalendarPolicy.NEXT_BUSINESS_DAY.value)
            times = CalendarFires(plain, calendar, policy)
    else:
        found = asyncio.run(_stored(settings, args.schedule_id))
        if isinstance(found, str):
            print(found, file=sys.stderr)
            return EXIT_PROBLEM
        times = found
    _print(times, after, args.n, as_json=args.json)
    return EXIT_OK


async def _stored(settings: Settings, schedule_id: int) -> FireTimes | CalendarFires | str:
    # Imported here: `next --cron` and the rest of the command line never load the store.
    from reporthubd import bootstrap, domain
    from reporthubd.store import schedules

    try:
        async with bootstrap.open_store(settings) as opened:
            found = await schedules.get_schedule(
                opened.store, schedule_id, default_timezone=settings.scheduler.timezone
            )
    except bootstrap.StoreRefused as exc:
        return str(exc)
    if found is None:
        return f"schedule {schedule_id} not found"
    if isinstance(found, domain.RowError):
        return f"schedule {schedule_id} is invalid (disabled): {'; '.join(found.problems)}"
    from reporthubd.scheduler import timetable

    return timetable.fire_times(found)  # moved or skipped by its business calendar, if any


async def _calendar(settings: Settings, name: str) -> Calendar | str:
    """The stored calendar `name` (active and valid), or why not."""
    from reporthubd import bootstrap
    from reporthubd.store import definitions

    try:
        async with bootstrap.open_store(settings) as opened:
            found = await definitions.load_calendars(opened.store)
    except bootstrap.StoreRefused as exc:
        return str(exc)
    if name not in found:
        known = ", ".join(repr(n) for n in sorted(found)) or "none"
        return f"--calendar: no active calendar {name!r} in report_calendars (active: {known})"
    return found[name]


def _print(times: FireTimes | CalendarFires, after: datetime, n: int, *, as_json: bool) -> None:
    from reporthubd.calendars import CalendarFires

    if isinstance(times, CalendarFires):
        _print_calendar(times, after, n, as_json=as_json)
        return
    fires = []
    for fire in times.iter_after(after):
        fires.append(
            {
                "utc": fire.isoformat().replace("+00:00", "Z"),
                "local": fire.astimezone(times.zone).isoformat(),
            }
        )
        if len(fires) >= n:
            break
    if as_json:
        print(json.dumps(fires))
        return
    for fire_text in fires:
        print(f"{fire_text['utc']}  {fire_text['local']} {times.zone.key}")


def _print_calendar(times: CalendarFires, after: datetime, n: int, *, as_json: bool) -> None:
    """The fires of a schedule with a business calendar, in the order they are claimed: each
    logical fire, SKIPPED or SHIFTED with the reason, and where a shifted fire runs."""

    zone = times.zone
    fires = times.describe(after, n)
    if as_json:
        print(json.dumps(fires))
        return
    for entry in fires:
        line = f"{entry['utc']}  {entry['local']} {zone.key}"
        if entry["status"] == "skipped":
            line += f"  SKIPPED ({entry['reason']})"
        elif entry["status"] == "shifted":
            line += f"  SHIFTED -> {entry['runs_local']} ({entry['reason']})"
        print(line)
