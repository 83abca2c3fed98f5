"""What the demo prints once the daemon is ready: what to open, the reports and schedules, and
commands to try (written as this demo was started, so they work when pasted)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from reporthubd.demo.reports import (
    ALERT_REPORT,
    DEMO_REPORTS,
    NOTIFIED_REPORT,
    Applied,
    notified_schedule,
)


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
        *_notices_and_alerts(folder, base, applied),
        "",
        "  Files accumulate (a few MB an hour); delete the folder when you are done.",
        "  Stop: Ctrl-C. Running the demo again reuses the folder, its data and its reports.",
    ]
    return "\n".join(lines)


def _notices_and_alerts(folder: Path, base: str, applied: Applied) -> list[str]:
    lines = []
    notified = notified_schedule(applied)
    if notified is not None:
        table = shlex.quote(str(folder / "sales.db"))
        lines += [
            "",
            "  notices (who is told, once per incident):",
            f"    {NOTIFIED_REPORT} fails on purpose (the sample data has no table stock).",
            "    Its rule sends one `failed` notice for the incident, not one per failed run, and",
            "    `recovered` after the first good run, to the on-call folder:",
            f"      {folder / 'reports' / 'notices'}/   (a text file per notice)",
            f"      curl {base}/api/notices   (the ledger: who, when, status)",
            f"    An incident is one schedule's (here schedule {notified.id}, every two minutes);",
            "    runs started by hand through /api/execute make their own.",
            "    Fix it, and its next fire (or this one, now) sends `recovered`:",
            f"      sqlite3 {table} 'CREATE TABLE stock (product_id INTEGER, on_hand INTEGER)'",
            f"      curl -X POST {base}/api/scheduler/trigger/{notified.id}",
        ]
    alerting = applied.configs.get(ALERT_REPORT)
    if alerting is not None:
        lines += [
            "",
            "  a conditional alert (sent only when it matters):",
            f"    {ALERT_REPORT} runs every minute and is sent only when an order of 1,000 or more",
            "    came in within 30 minutes (on_transition: when that turns true; one `resolved`",
            f"    notice in {folder / 'reports' / ALERT_REPORT}/ when it turns false). Each run",
            "    records the decision (alert_value, alert_decision, alert_reason):",
            f"      curl {base}/api/reports/{alerting.id}/alert   (the alert and its state)",
            "      the console's run pages, or GET /api/execution/EXECUTION_ID",
        ]
    return lines
