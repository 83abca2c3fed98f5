"""What to do with due fires that were not claimed on time: a pure function of the fires, `now`
and the schedule's policy.

A fire claimed within `ON_TIME_SECONDS` of its time is on time whatever the policy: loop jitter
and a busy minute boundary are not misfires. An older fire was missed (daemon down, store down,
loop blocked), and the schedule's `misfire_policy` decides, with its grace
(`misfire_grace_seconds`, default `scheduler.misfire_grace_seconds`):

- `run_once` (default): the most recent missed fire runs if it is within the grace, unless an
  on-time fire runs anyway; every other missed fire is coalesced into that run, recorded SKIPPED.
- `skip`: no missed fire runs; each is recorded SKIPPED.
- `run_all`: every missed fire within the grace runs, oldest first, each with its own
  `scheduled_for`; at most `run_all_limit` of them (the most recent), the rest recorded SKIPPED.

A missed fire that is not run is always written as a SKIPPED execution with the reason, never
dropped silently.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from reporthubd.domain import MisfirePolicy

ON_TIME_SECONDS = 5.0


@dataclass(frozen=True, kw_only=True)
class Decision:
    run: list[int] = field(default_factory=list)
    """Fires (Unix seconds) to claim as PENDING, oldest first."""
    skipped: list[tuple[int, str]] = field(default_factory=list)
    """Fires to record as SKIPPED, with the reason."""


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def decide(
    fires: Sequence[int],
    *,
    now: float,
    policy: MisfirePolicy,
    grace_seconds: float,
    run_all_limit: int,
    missed_because: str,
) -> Decision:
    """Split the due `fires` (Unix seconds, ascending) into runs and SKIPPED records.
    `missed_because` starts every reason, e.g. "missed: daemon down from X to Y"."""
    on_time = [fire for fire in fires if now - fire <= ON_TIME_SECONDS]
    missed = [fire for fire in fires if now - fire > ON_TIME_SECONDS]
    if not missed:
        return Decision(run=on_time)
    within = [fire for fire in missed if now - fire <= grace_seconds]
    beyond = f"{missed_because} (beyond the misfire grace of {grace_seconds:g} s)"
    skipped = [(fire, beyond) for fire in missed if now - fire > grace_seconds]
    run: list[int] = []
    if policy is MisfirePolicy.SKIP:
        skipped += [(fire, f"{missed_because} (misfire_policy skip)") for fire in within]
    elif policy is MisfirePolicy.RUN_ONCE:
        keep = on_time[-1] if on_time else (within[-1] if within else None)
        if not on_time and keep is not None:
            run.append(keep)
        coalesced = f"{missed_because} (run_once: coalesced into the run for {iso(keep or 0)})"
        skipped += [(fire, coalesced) for fire in within if fire != keep]
    else:
        run = within[-run_all_limit:]
        capped = within[: len(within) - len(run)]
        over = f"{missed_because} (more than run_all_limit={run_all_limit} missed fires)"
        skipped += [(fire, over) for fire in capped]
    skipped.sort()
    return Decision(run=sorted(run + on_time), skipped=skipped)
