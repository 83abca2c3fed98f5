"""Re-running one fire of a schedule: its next attempt under the scheduler's own claim key.

A fire is (schedule_id, scheduled_for); its attempts share UNIQUE (schedule_id, scheduled_for,
attempt) with the scheduler's claim (attempt 0), recoveries and backfills. `claim_rerun` decides
by the backfill rule with reprocess `all` (backfill_rules.decide), in one transaction that reads
the fire's attempts (FOR UPDATE where the store has it):

- no row yet: attempt 0, the schedule's own claim: the live scheduler, reaching that fire
  later, finds it taken and runs nothing;
- an attempt PENDING or RUNNING (the scheduler's, a recovery's, a backfill's, another
  re-run's): nothing is inserted, the caller is told which run is active (`FireActive`);
- else: the next attempt.

Two re-runs at the same moment insert the same attempt: the unique key refuses one, which
decides again and finds the other's run active. So a re-run and the scheduler never double a
fire, and a backfill (`--reprocess failed`) sees the re-run as the fire's latest attempt.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from reporthubd import backfill_rules as rules
from reporthubd import domain
from reporthubd.store import claims, schema
from reporthubd.store.backfills import attempt_record
from reporthubd.store.database import Store

_e = schema.executions


class FireActive(RuntimeError):
    """The fire has a PENDING or RUNNING attempt: re-running it now would double it."""

    def __init__(self, active: rules.Attempt, scheduled_for: datetime) -> None:
        self.active = active
        self.scheduled_for = scheduled_for
        super().__init__(
            f"the fire {scheduled_for.astimezone(UTC).isoformat()} is running as execution "
            f"{active.execution_id} (attempt {active.attempt}, {active.status.value}): "
            "cancel it or wait for it to end"
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Rerun:
    execution_id: str
    attempt: int
    reason: str
    """Why this attempt (backfill_rules.Decision.reason), for people."""


async def claim_rerun(
    store: Store,
    *,
    config_id: int,
    schedule_id: int,
    scheduled_for: datetime,
    trigger_type: domain.TriggerType,
    node_id: str,
    parameters: dict[str, Any] | None = None,
) -> Rerun:
    """Insert the fire's next attempt as a PENDING run of this node (see the module
    docstring). Raises FireActive when an attempt of the fire is PENDING or RUNNING."""
    for tries_left in reversed(range(5)):
        try:
            return await _claim(
                store, config_id, schedule_id, scheduled_for, trigger_type, node_id, parameters
            )
        except sa.exc.IntegrityError:
            # Another claim took that attempt first: decide again.
            if not tries_left:
                raise
        except sa.exc.OperationalError as exc:
            # MariaDB: two claims of a fire without rows hold the same gap lock, and one of the
            # inserts ends in a deadlock (1213): decide again. Anything else is the store's.
            if not tries_left or "1213" not in str(exc.orig):
                raise
    raise AssertionError("unreachable")


async def _claim(
    store: Store,
    config_id: int,
    schedule_id: int,
    scheduled_for: datetime,
    trigger_type: domain.TriggerType,
    node_id: str,
    parameters: dict[str, Any] | None,
) -> Rerun:
    async with store.engine.begin() as conn:
        rows = await conn.execute(
            sa.select(_e.c.scheduled_for, _e.c.attempt, _e.c.id, _e.c.status, _e.c.error_message)
            .where(_e.c.schedule_id == schedule_id, _e.c.scheduled_for == scheduled_for)
            .with_for_update()
        )
        past = rules.histories((row.scheduled_for, attempt_record(row)) for row in rows)
        history = past.get(scheduled_for.astimezone(UTC), rules.FireHistory())
        choice = rules.decide(history, rules.Reprocess.ALL)
        if choice.attempt is None:
            assert choice.follow is not None  # with reprocess all: only an active attempt
            raise FireActive(choice.follow, scheduled_for)
        execution_id = await claims.insert_pending(
            conn,
            config_id=config_id,
            schedule_id=schedule_id,
            scheduled_for=scheduled_for,
            trigger_type=trigger_type,
            node_id=node_id,
            attempt=choice.attempt,
            parameters=parameters,
        )
    return Rerun(execution_id=execution_id, attempt=choice.attempt, reason=choice.reason)
