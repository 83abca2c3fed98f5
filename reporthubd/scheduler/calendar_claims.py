"""Claims for the fires of a schedule that follows a business calendar (reporthubd/calendars.py).

A calendar timeline's instants are the ones at which something is claimed; each carries its
logical fires (`CalendarFires.fires_at`). The claim key stays (schedule_id, scheduled_for) with
the logical fire: a fire moved to Monday is still the Friday fire, claimed once. A moved fire's
claim carries where it went and why (`FireClaim.shift`), written beside the row once claimed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from reporthubd import domain
from reporthubd.calendars import CalendarFires, Fire
from reporthubd.scheduler.timetable import Timeline, utc
from reporthubd.store import claims

Paused = Callable[[domain.Schedule, float], str | None]
"""Why a fire of a paused schedule is SKIPPED (None: not paused then): scheduler.pausing."""


def _claim(schedule: domain.Schedule, fire: Fire, skipped: str | None) -> claims.FireClaim:
    return claims.FireClaim(
        schedule_id=schedule.id,
        config_id=schedule.config_id,
        scheduled_for=utc(fire.logical),
        skipped_reason=skipped,
        shift=(utc(fire.actual), fire.shift_reason) if fire.shift_reason else None,
    )


def claims_at(timeline: Timeline, due: int, paused: Paused | None = None) -> list[claims.FireClaim]:
    """The claims of every member of `timeline` at the instant `due`; a pause (`paused`)
    wins over the calendar."""
    fires = timeline.fires
    if not isinstance(fires, CalendarFires):
        when = utc(due)
        return [
            claims.FireClaim(
                schedule_id=job.schedule.id, config_id=job.schedule.config_id, scheduled_for=when
            )
            for job in timeline.members.values()
        ]
    out = []
    for fire in fires.fires_at(due):
        for job in timeline.members.values():
            schedule = job.schedule
            why = None
            if paused is not None and schedule.paused_at is not None:
                why = paused(schedule, fire.logical)
            out.append(_claim(schedule, fire, why or fire.skipped_reason))
    return out


def missed_claims(
    schedule: domain.Schedule,
    fires: CalendarFires,
    skipped: Iterable[tuple[int, str]],
    run: Iterable[int],
) -> list[claims.FireClaim]:
    """Catch-up's decision (instants SKIPPED with a reason, instants to run) as claims of the
    logical fires at those instants; a calendar's own skip wins over running."""
    out = [_claim(schedule, fire, why) for ts, why in skipped for fire in fires.fires_at(ts)]
    out += [
        _claim(schedule, fire, fire.skipped_reason) for ts in run for fire in fires.fires_at(ts)
    ]
    return out
