"""What the demo prints once the daemon is ready: what to open, the reports and schedules, and
commands to try (written as this demo was started, so they work when pasted)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from reporthubd.demo.reports import DEMO_REPORTS, Applied


def _self_command() -> str:
    """How this demo was started, so the printed commands work as pasted (`.venv/bin/...`)."""
    argv0 = sys.argv[0] if sys.argv else ""
    if Path(argv0).name == "reporthubd":
        return shlex.quote(argv0)
    return f"{shlex.quote(sys.executable)} -m reporthubd"


def banner(
    folder: Path, port: int, listen_note: str | None, applied: Applied, started: list[str]
) -> str:
    base = f"http://127.0.0.1:{port}"
    command = _self_command()
    config_file = shlex.quote(str(folder / "config.toml"))
    by_id = {config.id: config for config in applied.configs.values()}
    lines = [""]
    if listen_note:
        lines.append(f"  note: {listen_note}")
    lines += [
        f"  open:          {base}/   (the status page)",
        f"  console:       {base}/console   (history, run pages, run now, pause, backfill)",
        f"  files land in: {folder / 'reports'}/<report name>/",
        "",
        "  reports:",
    ]
    for name in DEMO_REPORTS:
        if (config := applied.configs.get(name)) is not None:
            kind = config.output_format.value
            lines.append(f"    id {config.id}  {name:<15} {kind:<6} {config.description}")
    lines += ["", "  schedules (cron in the schedule's own time zone):"]
    for schedule in applied.schedules:
        config = by_id.get(schedule.config_id)
        report = config.name if config is not None else str(schedule.config_id)
        zone = schedule.timezone.key
        params = ", ".join(f"{k}={v}" for k, v in schedule.parameters.items())
        lines.append(
            f"    id {schedule.id}  {report:<15} {schedule.cron_expression:<15} {zone:<17}{params}"
        )
    if started:
        lines += [
            "",
            f"  Each report was also run once just now ({len(started)} manual runs), so there is a",
            "  file of each format without waiting for the schedules.",
        ]
    first = applied.configs.get(DEMO_REPORTS[0])
    lines += ["", "  try:"]
    if first is not None:
        lines += [
            f"    curl -X POST {base}/api/execute/{first.id}",
            f"        runs {first.name} now (any report id works); the answer has the execution id",
        ]
    lines += [
        f"    curl {base}/api/execution/EXECUTION_ID",
        "        that run: status, rows, file name",
    ]
    if applied.schedules:
        schedule_id = applied.schedules[0].id
        lines += [
            f"    curl -X POST {base}/api/scheduler/trigger/{schedule_id}",
            f"        fires schedule {schedule_id} now, with its parameters",
            f"    curl -X POST {base}/api/schedules/{schedule_id}/pause"
            + """ -d '{"reason": "trying"}'""",
            f"    curl -X POST {base}/api/schedules/{schedule_id}/resume",
            "        pauses it (its fires are recorded SKIPPED, with who and why), then resumes it",
        ]
    lines += [
        f"    curl {base}/api/scheduler/jobs",
        "        every schedule and its next fire",
        f"    {command} export -c {config_file} > my-reports.toml",
        f"    {command} apply -c {config_file} my-reports.toml",
        "        the demo's reports as a TOML file: edit it, apply it back (the running daemon",
        "        picks the change up within 10 seconds)",
        "",
        "  Files accumulate (a few MB an hour); delete the folder when you are done.",
        "  Stop: Ctrl-C. Running the demo again reuses the folder, its data and its reports.",
    ]
    return "\n".join(lines)
