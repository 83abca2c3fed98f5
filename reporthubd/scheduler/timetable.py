"""The timetable: which schedules are loaded, and when each fires next. Pure: no store, no clock.

Schedules that share an expression, a zone and bounds share one `Timeline`, so a minute boundary
with thousands of due schedules computes a handful of next times, not thousands. Timelines sit in
a heap keyed by their next fire instant (Unix seconds). A heap entry is live while it carries its
timeline's current `token` and the timeline still has members; anything else is stale and
dropped when it reaches the top, so moving or emptying a timeline never searches the heap.

`apply` swaps a new set of schedule definitions in, synchronously: whoever reads the timetable
sees the old state or the new, never a mix. Unchanged schedules keep their timeline (and so their
next fire), changed ones move to the timeline of their new key, removed ones leave; each `apply`
bumps `generation`, which voids anything computed from the state before it.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from reporthubd import domain
from reporthubd.calendars import CalendarFires
from reporthubd.cron import FireTimes, parse_cron

TimelineKey = tuple[str, str, float | None, float | None, str | None]
"""(normalised cron fields, zone name, start_at, end_at as Unix seconds, calendar and policy)."""


class Timeline:
    """The fires shared by every schedule with the same expression, zone and bounds."""

    __slots__ = ("fires", "key", "members", "next_ts", "token")

    def __init__(
        self, key: TimelineKey, fires: FireTimes | CalendarFires, next_ts: int | None
    ) -> None:
        self.key = key
        self.fires = fires
        self.members: dict[int, Job] = {}
        self.next_ts = next_ts
        self.token = 0


class Job:
    """One loaded schedule."""

    __slots__ = ("last_fire", "schedule", "timeline")

    def __init__(self, schedule: domain.Schedule, timeline: Timeline) -> None:
        self.schedule = schedule
        self.timeline = timeline
        self.last_fire: int | None = None


HeapEntry = tuple[int, int, int, Timeline]
"""(fire instant, sequence, the timeline's token when pushed, timeline) in the timetable's heap."""


@dataclass(frozen=True, kw_only=True)
class Changes:
    """What one `apply` changed, in schedules."""

    added: int = 0
    changed: int = 0
    removed: int = 0
    disabled: int = 0


def timeline_key(schedule: domain.Schedule, fields: dict[str, str] | None = None) -> TimelineKey:
    """`fields`: normalised cron fields by expression, filled in as schedules are keyed (a
    load keys every schedule, most of them sharing a few expressions)."""
    expression = schedule.cron_expression
    normalised = fields.get(expression) if fields is not None else None
    if normalised is None:
        normalised = " ".join(parse_cron(expression).fields)
        if fields is not None:
            fields[expression] = normalised
    return (
        normalised,
        schedule.timezone.key,
        schedule.start_at.timestamp() if schedule.start_at else None,
        schedule.end_at.timestamp() if schedule.end_at else None,
        calendar_key(schedule),
    )


def calendar_key(schedule: domain.Schedule) -> str | None:
    """The calendar's whole definition and the policy: an edited calendar is a new timeline."""
    calendar, policy = schedule.calendar, schedule.calendar_policy
    if calendar is None or policy is None:
        return None
    return "|".join(
        (
            policy.value,
            calendar.name,
            calendar.country or "",
            calendar.subdivision or "",
            ",".join(f"{d}={n}" for d, n in sorted(calendar.added.items())),
            ",".join(str(d) for d in sorted(calendar.removed)),
        )
    )


def fire_times(schedule: domain.Schedule) -> FireTimes | CalendarFires:
    """The instants at which `schedule` claims fires: its cron's, moved by its calendar."""
    fires = FireTimes(
        parse_cron(schedule.cron_expression),
        schedule.timezone,
        start_at=schedule.start_at,
        end_at=schedule.end_at,
    )
    if schedule.calendar is None or schedule.calendar_policy is None:
        return fires
    return CalendarFires(fires, schedule.calendar, schedule.calendar_policy)


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


class Timetable:
    """The loaded schedules (`jobs`), the refused ones with their reason (`disabled`), and the
    heap of their timelines. `jobs` is one dict for the timetable's whole life (changed in
    place), so a part that reads it per fire may keep a reference to it."""

    def __init__(self) -> None:
        self.jobs: dict[int, Job] = {}
        self.disabled: dict[int, str] = {}
        self.timelines: dict[TimelineKey, Timeline] = {}
        self.heap: list[HeapEntry] = []
        self.generation = 0
        # The latest instant dispatched: timelines created by `apply` start after it.
        self.horizon = 0.0
        self._seq = itertools.count()

    # -- reload diffing ----------------------------------------------------------------------

    def apply(
        self, schedules: Iterable[domain.Schedule], disabled: dict[int, str], now: float
    ) -> Changes:
        """Swap `schedules` in as the loaded set. `disabled` holds the schedules refused while
        reading (by id, with the reason); schedules whose expression never fires join it.
        New timelines start after the horizon (what has been dispatched), or after `now`."""
        self.generation += 1  # what was computed from the old state is void
        horizon = max(self.horizon, 0.0) or now
        added = changed = 0
        seen: set[int] = set()
        never: dict[tuple[str, str], bool] = {}
        fields: dict[str, str] = {}
        for schedule in schedules:
            job = self.jobs.get(schedule.id)
            try:
                key = timeline_key(schedule, fields)
            except ValueError as exc:  # rows.schedule validated it; defensive
                disabled[schedule.id] = str(exc)
                continue
            if key[:2] not in never:  # once per expression and zone, not per schedule
                never[key[:2]] = _never_fires(schedule, now)
            if never[key[:2]]:
                disabled[schedule.id] = (
                    f"cron_expression: {schedule.cron_expression!r} never fires "
                    "(no matching date in the next 50 years)"
                )
                continue
            seen.add(schedule.id)
            if job is not None and job.timeline.key == key:
                if not _same(job.schedule, schedule):
                    changed += 1
                job.schedule = schedule
                continue
            if job is not None:
                changed += 1
                self._leave(job)
            else:
                added += 1
            timeline = self._timeline(key, schedule, horizon)
            new_job = Job(schedule, timeline)
            if job is not None:
                new_job.last_fire = job.last_fire
            timeline.members[schedule.id] = new_job
            self.jobs[schedule.id] = new_job
        removed = 0
        for schedule_id in [sid for sid in self.jobs if sid not in seen]:
            self._leave(self.jobs.pop(schedule_id))
            removed += 1
        self.disabled = disabled
        return Changes(added=added, changed=changed, removed=removed, disabled=len(disabled))

    def _timeline(self, key: TimelineKey, schedule: domain.Schedule, horizon: float) -> Timeline:
        timeline = self.timelines.get(key)
        if timeline is None:
            fires = fire_times(schedule)
            timeline = Timeline(key, fires, fires.next_ts(horizon))
            self.timelines[key] = timeline
            self.push(timeline)
        return timeline

    def _leave(self, job: Job) -> None:
        timeline = job.timeline
        timeline.members.pop(job.schedule.id, None)
        if not timeline.members:
            self.timelines.pop(timeline.key, None)
            timeline.token += 1  # its heap entries are now stale

    # -- the heap -----------------------------------------------------------------------------

    def push(self, timeline: Timeline) -> None:
        """(Re)enter `timeline` at its `next_ts`; its older heap entries become stale."""
        timeline.token += 1
        if timeline.next_ts is not None:
            heapq.heappush(self.heap, (timeline.next_ts, next(self._seq), timeline.token, timeline))

    def peek(self) -> int | None:
        """The earliest live fire instant, dropping stale entries on the way."""
        heap = self.heap
        while heap:
            ts, _, token, timeline = heap[0]
            if token == timeline.token and timeline.members:
                return ts
            heapq.heappop(heap)
        return None

    def pop_due(self, now: float) -> list[Timeline]:
        """Take every live timeline due at or before `now` off the heap; the caller moves each
        on and `push`es it back (or pushes them back unchanged when it could not dispatch)."""
        due: list[Timeline] = []
        while (ts := self.peek()) is not None and ts <= now:
            due.append(heapq.heappop(self.heap)[3])
        return due

    def due_at(self, due: int) -> list[Timeline]:
        return due_timelines(self.heap, due)

    def fires_at(self, due: int) -> int:
        return sum(len(t.members) for t in self.due_at(due))

    def next_fire(self) -> tuple[datetime, int] | None:
        """The next fire instant and how many schedules fire at it."""
        ts = self.peek()
        if ts is None:
            return None
        count = sum(
            len(timeline.members) for timeline in self.timelines.values() if timeline.next_ts == ts
        )
        return utc(ts), count

    def next_of(self, schedule_id: int) -> datetime | None:
        job = self.jobs.get(schedule_id)
        if job is None or job.timeline.next_ts is None:
            return None
        return utc(job.timeline.next_ts)


def due_timelines(heap: list[HeapEntry], due: int) -> list[Timeline]:
    """The live timelines whose heap entry is at `due`, the heap's earliest instant. Only the
    heap's top part is walked (a child is never earlier than its parent), not every timeline:
    a sparse set of thousands of timelines costs a few steps per fire. An entry is live when
    its token is still its timeline's and the timeline has members."""
    found, stack = [], [0]
    while stack:
        i = stack.pop()
        if i >= len(heap) or heap[i][0] != due:
            continue
        _, _, token, timeline = heap[i]
        if token == timeline.token and timeline.members:
            found.append(timeline)
        stack += (2 * i + 1, 2 * i + 2)
    return found


def _same(a: domain.Schedule, b: domain.Schedule) -> bool:
    """Equal apart from the columns reporthubd itself writes (and updated_at)."""
    volatile = {"last_run_at": None, "next_run_at": None, "updated_at": None}
    return {**a.__dict__, **volatile} == {**b.__dict__, **volatile}


def _never_fires(schedule: domain.Schedule, now: float) -> bool:
    """An expression that parses but matches no date (February 30th), whatever the bounds."""
    spec = parse_cron(schedule.cron_expression)
    return FireTimes(spec, schedule.timezone).next_ts(now) is None
