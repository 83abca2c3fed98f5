"""The deadline watch (issue 17, item 3): a schedule may say by when, in its zone, the run of
each fire must have COMPLETED (report_schedules.deadline: "07:30", "07:30 Europe/Berlin" or
"+20m", notify/report_rules.py). Past that instant without a COMPLETED run, one `late` notice
goes out and reporthubd_late_runs counts the fire once.

Every node watches (`run`, a named task the daemon supervises) and may see the same deadline
pass: the notice's key, `late:<schedule>:<fire>`, makes it one notice across nodes (every
watching node records it, idempotently, so a node killed meanwhile loses nothing), and the
fire's row in report_late_fires (store/incidents.claim_late) makes it one count: only the node
that inserts it counts the fire and logs it, whether or not the report's rules send `late`.
The watch sleeps until the earliest coming deadline (at most `REFRESH_SECONDS`, when it
re-reads the schedules). Deadlines that passed while no node ran are
checked at start-up over `LOOKBACK`. A fire recorded SKIPPED (paused, holiday, missed: their own
notices say so) is not late, nor a fire on a closed day of the schedule's business calendar
(skipped, or moved to another day: the deadline is not judged for the moved run).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from reporthubd import domain, logs, metrics
from reporthubd.cron import FireTimes, parse_cron
from reporthubd.notify.notifier import Notifier
from reporthubd.notify.report_rules import Deadline, parse_deadline
from reporthubd.notify_rules import RuleError
from reporthubd.store import incidents
from reporthubd.store.database import Store, error_line
from reporthubd.store.definitions import load_definitions
from reporthubd.timeutil import utcnow

log = logs.get(__name__)

REFRESH_SECONDS = 30.0
LOOKBACK = timedelta(hours=1)
MAX_FIRES_PER_CHECK = 500
"""Fires of one schedule looked at per pass, newest first (a per-second cron with a deadline
must not make a pass enumerate a day of fires)."""


def span(deadline: Deadline) -> timedelta:
    """How long after its fire a deadline can fall."""
    return deadline.after if deadline.after is not None else timedelta(days=1, hours=1)


def passed(
    fires: FireTimes, deadline: Deadline, zone: ZoneInfo, since: datetime, now: datetime
) -> list[tuple[datetime, datetime]]:
    """(fire, deadline) of the fires whose deadline fell in (since, now], oldest first."""
    found: list[tuple[datetime, datetime]] = []
    before = now + timedelta(seconds=1)
    earliest = since - span(deadline)
    for _ in range(MAX_FIRES_PER_CHECK):
        fire = fires.previous_before(before)
        if fire is None or fire <= earliest:
            break
        due = deadline.due(fire, zone)
        if since < due <= now:
            found.append((fire, due))
        before = fire
    return found[::-1]


def next_due(
    fires: FireTimes, deadline: Deadline, zone: ZoneInfo, now: datetime
) -> datetime | None:
    """The earliest deadline after `now`."""
    best: datetime | None = None
    for fire in _recent_and_next(fires, deadline, now):
        due = deadline.due(fire, zone)
        if due > now and (best is None or due < best):
            best = due
    return best


def _recent_and_next(fires: FireTimes, deadline: Deadline, now: datetime) -> list[datetime]:
    out = []
    before = now + timedelta(seconds=1)
    earliest = now - span(deadline)
    for _ in range(3):
        fire = fires.previous_before(before)
        if fire is None or fire <= earliest:
            break
        out.append(fire)
        before = fire
    coming = fires.next_after(now)
    if coming is not None:
        out.append(coming)
    return out


class DeadlineWatch:
    def __init__(
        self, store: Store, notifier: Notifier, *, default_timezone: str, started_at: datetime
    ) -> None:
        self.store = store
        self.notifier = notifier
        self.default_timezone = default_timezone
        self._since: datetime = started_at - LOOKBACK
        self._refused: set[tuple[int, str]] = set()

    async def run(self) -> None:
        while True:
            try:
                wait = await self.check()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a store outage: look again later
                log.warning("deadline check failed", error=error_line(exc))
                wait = REFRESH_SECONDS
            await asyncio.sleep(wait)

    async def check(self, now: datetime | None = None) -> float:
        """Record the `late` notices of deadlines passed since the last check; returns the
        seconds until the next check."""
        now = now or utcnow()
        since, self._since = self._since, now
        rows = await incidents.deadlines(self.store)
        if not rows:
            return REFRESH_SECONDS
        definitions = await load_definitions(self.store, default_timezone=self.default_timezone)
        wake = now + timedelta(seconds=REFRESH_SECONDS)
        for row in rows:
            schedule = definitions.schedules.get(row.schedule_id)
            if schedule is None:
                continue
            try:
                deadline = parse_deadline(
                    row.deadline, key=f"schedules[{row.schedule_id}].deadline"
                )
            except RuleError as exc:
                if (row.schedule_id, row.deadline) not in self._refused:
                    self._refused.add((row.schedule_id, row.deadline))
                    log.error(
                        "schedule deadline refused", schedule_id=row.schedule_id, error=str(exc)
                    )
                continue
            fires = FireTimes(
                parse_cron(schedule.cron_expression),
                schedule.timezone,
                start_at=schedule.start_at,
                end_at=schedule.end_at,
            )
            for fire, due in passed(fires, deadline, schedule.timezone, since, now):
                await self._judge(schedule, deadline, fire, due)
            coming = next_due(fires, deadline, schedule.timezone, now)
            if coming is not None and coming < wake:
                wake = coming
        return max(0.05, (wake - utcnow()).total_seconds() + 0.05)

    async def _judge(
        self, schedule: domain.Schedule, deadline: Deadline, fire: datetime, due: datetime
    ) -> None:
        row = await incidents.fire(self.store, schedule.id, fire)
        if row is not None and row.status in (
            domain.ExecutionStatus.COMPLETED,
            domain.ExecutionStatus.SKIPPED,
        ):
            return
        calendar = schedule.calendar
        local_day = fire.astimezone(schedule.timezone).date()
        if row is None and calendar is not None and not calendar.is_business_day(local_day):
            return  # a closed day: the fire is skipped or moved, not late (see the docstring)
        state = (
            f"the run {row.execution_id} is {row.status.value}"
            + (f": {row.error_message}" if row.error_message else "")
            if row is not None
            else "no run was claimed for the fire"
        )
        why = f"deadline {deadline.text} passed at {due.isoformat()}; {state}"
        execution_id = row.execution_id if row is not None else None
        await self.notifier.record_late(
            config_id=schedule.config_id,
            schedule_id=schedule.id,
            scheduled_for=fire,
            execution_id=execution_id,
            why=why,
        )
        # Counted once per (schedule, fire), by the node whose claim went in (see above).
        if await incidents.claim_late(
            self.store,
            schedule_id=schedule.id,
            scheduled_for=fire,
            config_id=schedule.config_id,
            execution_id=execution_id,
            node_id=self.notifier.node_id,
        ):
            metrics.LATE_RUNS.inc()
            log.warning(
                "run late", schedule_id=schedule.id, scheduled_for=fire.isoformat(), why=why
            )
