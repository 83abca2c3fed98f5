"""What a notice says (pure): what happened, to which report and fire, why, and how to look.

A notice's text is composed when it is recorded (report_notices.message), so every node sends
the same words: the first line is the subject, the rest the body.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

HEADLINES = {
    "failed": "FAILED",
    "timeout": "TIMED OUT",
    "partial": "PARTIAL (some deliveries failed)",
    "missed": "MISSED fires",
    "retries_exhausted": "DELIVERY GIVEN UP",
    "recovered": "RECOVERED",
    "late": "LATE (past its deadline)",
    "suspended": "SUSPENDED (schedule paused)",
    "resolved": "RESOLVED (the alert's condition no longer holds)",
}

WHAT = {
    "failed": "The run failed.",
    "timeout": "The run passed its timeout and was stopped.",
    "partial": "The run finished, but some of its deliveries failed.",
    "missed": "Fires of the schedule were not run; they are recorded SKIPPED.",
    "retries_exhausted": "A delivery of the run was given up after its retries.",
    "recovered": "The report ran successfully again after an incident.",
    "late": "The fire's run had not COMPLETED by the schedule's deadline.",
    "suspended": "The schedule paused itself after consecutive failures; resume it when fixed.",
    "resolved": "The report's alert condition turned false; this run is not sent.",
}


@dataclass(frozen=True, kw_only=True)
class Facts:
    event: str
    report_name: str
    config_id: int
    schedule_id: int | None
    execution_id: str | None
    scheduled_for: datetime | None
    why: str | None
    """The error line, the skip reason, the deadline missed."""
    link: str | None
    """The run in the API (`<base>/api/execution/<id>`); the notice also names its console
    page (`<base>/console/runs/<id>`)."""
    reminder: int = 0
    """0: the incident's first notice; N: its Nth reminder."""
    incident: str | None = None
    """A line about the incident: when it opened, how many runs failed since."""


def _one_line(text: str | None, limit: int = 500) -> str | None:
    if not text:
        return None
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def compose(facts: Facts) -> str:
    """The notice: subject line, blank line, body."""
    headline = HEADLINES.get(facts.event, facts.event.upper())
    fire = facts.scheduled_for.isoformat() if facts.scheduled_for is not None else None
    where = f"schedule {facts.schedule_id}" if facts.schedule_id is not None else "manual run"
    again = f" (reminder {facts.reminder})" if facts.reminder else ""
    subject = f"[reporthubd] {headline}{again}: {facts.report_name} ({where}"
    subject += f", fire {fire})" if fire else ")"
    lines = [
        subject,
        "",
        f"What happened: {WHAT.get(facts.event, facts.event)}",
        f"Report: {facts.report_name} (id {facts.config_id})"
        + (f", schedule {facts.schedule_id}" if facts.schedule_id is not None else ""),
    ]
    if fire:
        lines.append(f"Fire: {fire}")
    why = _one_line(facts.why)
    if why:
        lines.append(f"Why: {why}")
    if facts.incident:
        lines.append(f"Incident: {facts.incident}")
    if facts.execution_id:
        lines.append(f"Run: {facts.execution_id}")
    if facts.link:
        base, _, _ = facts.link.partition("/api/execution/")
        if facts.execution_id and base != facts.link:
            lines.append(f"Look: {base}/console/runs/{facts.execution_id}")
        lines.append(f"API: {facts.link}")
    return "\n".join(lines) + "\n"


def split(message: str) -> tuple[str, str]:
    """(subject, body) of a composed notice."""
    subject, _, body = message.partition("\n")
    return subject.strip(), body.lstrip("\n")


def run_link(base: str, execution_id: str | None) -> str | None:
    if not execution_id:
        return None
    return f"{base.rstrip('/')}/api/execution/{execution_id}"
