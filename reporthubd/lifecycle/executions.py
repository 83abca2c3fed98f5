"""Every state change of an execution, as a named operation (the one writer of statuses).

    lifecycle = Lifecycle(store, node_id=..., events=events, ownership=ownership)
    execution_id = await lifecycle.create(config_id=..., trigger_type=TriggerType.MANUAL)
    lifecycle.claimed(claims)                  # the scheduler's batch claims (store.claims)
    await lifecycle.start(execution)           # PENDING -> RUNNING, held by this node
    await lifecycle.finish(execution, Status.COMPLETED, row_count=...)
    await lifecycle.mark_lost(lost, ...)       # the recovery sweep
    await lifecycle.settle(execution_id, status, error)   # the delivery ledger
    await lifecycle.reopen(execution)          # redelivery

Each operation is a transition of `domain.TRANSITIONS`: it refuses (TransitionRefused) a target
status the transition cannot reach, and writes conditionally on the source status, so two nodes
never both move the same row; the store answers whether this call made the move. The writes of a
run this node holds are also conditional on the row still being this node's (fencing). After a
move, one `LifecycleEvent` is published (events.py).

Writes that record an outcome (`durable`) wait out a store outage in the store journal
(store/journal.py): the event is published when the write is made or journaled.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from reporthubd import domain, logs
from reporthubd.lifecycle.events import Events, LifecycleEvent, with_metrics
from reporthubd.lifecycle.fencing import Ownership
from reporthubd.store import claims, executions, reruns
from reporthubd.store import lost as lost_runs
from reporthubd.store.database import Store
from reporthubd.timeutil import utcnow

log = logs.get(__name__)

Status = domain.ExecutionStatus
T = domain.Transition

_ENDING = {
    Status.COMPLETED: T.FINISHED,
    Status.PARTIAL: T.FINISHED,
    Status.FAILED: T.FAILED,
    Status.TIMEOUT: T.TIMED_OUT,
    Status.CANCELLED: T.CANCELLED,
}


class TransitionRefused(ValueError):
    """A status change outside the table of allowed transitions (a bug, or bad input)."""


def check(transition: domain.Transition, old: Status | None, new: Status) -> None:
    if not domain.allowed(transition, old, new):
        before = old.value if old is not None else "(new)"
        raise TransitionRefused(
            f"transition {transition.value} cannot move an execution from {before} to {new.value}"
        )


class Lifecycle:
    def __init__(
        self,
        store: Store,
        *,
        node_id: str,
        events: Events | None = None,
        ownership: Ownership | None = None,
    ) -> None:
        self.store = store
        self.node_id = node_id
        self.events = events if events is not None else with_metrics()
        self.ownership = ownership or Ownership(store, node_id=node_id)

    # -- new rows --------------------------------------------------------------------------------

    async def create(
        self,
        *,
        config_id: int,
        trigger_type: domain.TriggerType,
        schedule_id: int | None = None,
        scheduled_for: datetime | None = None,
        parameters: Mapping[str, Any] | None = None,
    ) -> str:
        """A new PENDING run, claimed by this node: a manual run, or a re-run of a schedule's
        fire (the next attempt of (schedule_id, scheduled_for), never the fire's own claim)."""
        values = dict(parameters) if parameters else None
        if schedule_id is not None and scheduled_for is not None:
            execution_id = await claims.insert_rerun(
                self.store,
                config_id=config_id,
                schedule_id=schedule_id,
                scheduled_for=scheduled_for,
                trigger_type=trigger_type,
                node_id=self.node_id,
                parameters=values,
            )
        else:
            inserted = await executions.insert_execution(
                self.store,
                config_id=config_id,
                trigger_type=trigger_type,
                schedule_id=schedule_id,
                scheduled_for=scheduled_for,
                parameters=values,
                node_id=self.node_id,
            )
            if inserted is None:
                raise RuntimeError("this fire was already claimed")
            execution_id = inserted
        self._publish(
            execution_id,
            config_id,
            schedule_id,
            T.CREATED,
            None,
            Status.PENDING,
            None,
            trigger_type=trigger_type,
            scheduled_for=scheduled_for,
        )
        return execution_id

    async def rerun_fire(
        self,
        *,
        config_id: int,
        schedule_id: int,
        scheduled_for: datetime,
        parameters: Mapping[str, Any] | None = None,
    ) -> reruns.Rerun:
        """A person's re-run of one fire: its next attempt under the scheduler's claim key
        (store/reruns.py), PENDING and claimed by this node. Raises reruns.FireActive while an
        attempt of the fire is PENDING or RUNNING."""
        rerun = await reruns.claim_rerun(
            self.store,
            config_id=config_id,
            schedule_id=schedule_id,
            scheduled_for=scheduled_for,
            trigger_type=domain.TriggerType.MANUAL,
            node_id=self.node_id,
            parameters=dict(parameters) if parameters else None,
        )
        self._publish(
            rerun.execution_id,
            config_id,
            schedule_id,
            T.CREATED,
            None,
            Status.PENDING,
            None,
            trigger_type=domain.TriggerType.MANUAL,
            scheduled_for=scheduled_for,
        )
        return rerun

    def claimed(self, claimed: Iterable[claims.Claimed]) -> None:
        """Publish the rows a batch claim of fires inserted (PENDING to run, or SKIPPED with
        the reason): the claim itself is the insert (store/claims.py), made in the scheduler's
        hot path; its events are built only when someone listens."""
        if not self.events.wanted(T.CREATED):
            return
        at = utcnow()
        for row in claimed:
            claim = row.claim
            self.events.publish(
                LifecycleEvent(
                    execution_id=row.execution_id,
                    config_id=claim.config_id,
                    schedule_id=claim.schedule_id,
                    transition=T.CREATED,
                    old=None,
                    new=Status.SKIPPED if row.skipped else Status.PENDING,
                    reason=claim.skipped_reason,
                    node_id=self.node_id,
                    at=at,
                    trigger_type=domain.TriggerType.SCHEDULE,
                    scheduled_for=claim.scheduled_for,
                )
            )

    def inserted(
        self,
        execution_id: str,
        *,
        config_id: int,
        schedule_id: int | None,
        scheduled_for: datetime | None,
        trigger_type: domain.TriggerType,
    ) -> None:
        """Publish a PENDING run another part inserted in a transaction of its own (a backfill
        claims a fire and records it in one transaction: store/backfills.py)."""
        self._publish(
            execution_id,
            config_id,
            schedule_id,
            T.CREATED,
            None,
            Status.PENDING,
            None,
            trigger_type=trigger_type,
            scheduled_for=scheduled_for,
        )

    # -- a run of this node ----------------------------------------------------------------------

    async def start(self, execution: domain.Execution) -> bool:
        """PENDING -> RUNNING on this node (heartbeat from now). Returns False when it is no
        longer PENDING (cancelled, or another node adopted it)."""
        check(T.STARTED, Status.PENDING, Status.RUNNING)
        now = utcnow()
        moved = await executions.update_execution(
            self.store,
            execution.id,
            only_if_status=(Status.PENDING,),
            status=Status.RUNNING,
            node_id=self.node_id,
            started_at=now,
            heartbeat_at=now,
        )
        if moved:
            self._publish_for(execution, T.STARTED, Status.PENDING, Status.RUNNING, None)
        return moved

    async def record(self, execution: domain.Execution, **columns: Any) -> bool:
        """Write columns of a RUNNING run of this node that are not its status (its resolved
        parameters, its file): durable, and only while the run is still this node's."""
        if "status" in columns:
            raise TransitionRefused("record() writes no status: use a transition")
        return await executions.update_execution(
            self.store,
            execution.id,
            only_if_status=(Status.RUNNING,),
            only_if_node=self.node_id,
            durable=True,
            **columns,
        )

    async def finish(
        self,
        execution: domain.Execution,
        status: Status,
        *,
        error: str | None = None,
        row_count: int | None = None,
        file: Mapping[str, Any] | None = None,
    ) -> bool:
        """RUNNING -> a final status: the run's own outcome (finished, failed, timed out or
        cancelled), durable, and only while the run is still this node's. Returns whether it was
        recorded (False: another node marked it lost meanwhile; nothing is written)."""
        transition = _ENDING.get(status)
        if transition is None:
            raise TransitionRefused(f"{status.value} is not a final status of a run")
        check(transition, Status.RUNNING, status)
        values: dict[str, Any] = dict(file or {})
        if row_count is not None:
            values["row_count"] = row_count
        values |= {"status": status, "finished_at": utcnow(), "error_message": error}
        self.ownership.ending(execution.id)
        written = await executions.update_execution(
            self.store,
            execution.id,
            only_if_status=(Status.RUNNING,),
            only_if_node=self.node_id,
            durable=True,
            **values,
        )
        if written:
            self.ownership.release(execution.id)  # ended: no revalidation may call it lost
            self._publish_for(execution, transition, Status.RUNNING, status, error)
        return written

    async def fail_unstarted(self, execution: domain.Execution | str, reason: str) -> bool:
        """PENDING -> FAILED: the run cannot start (its definitions are missing or invalid, or
        it could not be handed to the engine)."""
        check(T.FAILED, Status.PENDING, Status.FAILED)
        now = utcnow()
        execution_id = execution if isinstance(execution, str) else execution.id
        written = await executions.update_execution(
            self.store,
            execution_id,
            only_if_status=(Status.PENDING,),
            durable=True,
            status=Status.FAILED,
            node_id=self.node_id,
            started_at=now,
            finished_at=now,
            row_count=0,
            error_message=reason,
        )
        if written and self.events.wanted(T.FAILED):
            if isinstance(execution, str):
                execution = await executions.get_execution(self.store, execution) or execution
            if not isinstance(execution, str):
                self._publish_for(execution, T.FAILED, Status.PENDING, Status.FAILED, reason)
        return written

    async def skip_waiting(self, execution_id: str, reason: str) -> bool:
        """PENDING -> SKIPPED: a run that waited past its deadline (wait_policy skip)."""
        check(T.WAIT_EXPIRED, Status.PENDING, Status.SKIPPED)
        now = utcnow()
        written = await executions.update_execution(
            self.store,
            execution_id,
            only_if_status=(Status.PENDING,),
            durable=True,
            status=Status.SKIPPED,
            node_id=self.node_id,
            finished_at=now,
            row_count=0,
            error_message=reason,
        )
        if written and self.events.wanted(T.WAIT_EXPIRED):
            found = await executions.get_execution(self.store, execution_id)
            if found is not None:
                self._publish_for(found, T.WAIT_EXPIRED, Status.PENDING, Status.SKIPPED, reason)
        return written

    async def cancel_pending(
        self,
        execution_id: str,
        reason: str,
        *,
        execution: domain.Execution | None = None,
        durable: bool = False,
    ) -> bool:
        """PENDING -> CANCELLED: a queued run (of any node) that never started."""
        check(T.CANCELLED, Status.PENDING, Status.CANCELLED)
        written = await executions.update_execution(
            self.store,
            execution_id,
            only_if_status=(Status.PENDING,),
            durable=durable,
            status=Status.CANCELLED,
            finished_at=utcnow(),
            error_message=reason,
        )
        if written:
            if execution is None:
                execution = await executions.get_execution(self.store, execution_id)
            if execution is not None:
                self._publish_for(execution, T.CANCELLED, Status.PENDING, Status.CANCELLED, reason)
        return written

    # -- runs no live node owns (the recovery sweep) -----------------------------------------

    async def mark_lost(
        self,
        lost: lost_runs.LostExecution,
        *,
        cutoff: datetime,
        started_at: datetime,
        reason: str,
        recover: bool,
        judge_others: bool,
    ) -> tuple[bool, str | None]:
        """RUNNING (or PENDING) -> FAILED "node lost", re-checked in the same conditional write
        (exactly one node wins), and with `recover` its recovery run (PENDING, this node's) in
        the same transaction. Returns (whether this node marked it, the recovery's id)."""
        check(T.MARKED_LOST, lost.status, Status.FAILED)
        marked, recovered = await lost_runs.fail_lost(
            self.store,
            lost,
            cutoff=cutoff,
            node_id=self.node_id,
            started_at=started_at,
            reason=reason,
            recover=recover,
            judge_others=judge_others,
        )
        if not marked:
            return False, None
        self._publish(
            lost.id,
            lost.config_id,
            lost.schedule_id,
            T.MARKED_LOST,
            lost.status,
            Status.FAILED,
            reason,
            scheduled_for=lost.scheduled_for,
        )
        if recovered is not None:
            self._publish(
                recovered,
                lost.config_id,
                lost.schedule_id,
                T.CREATED,
                None,
                Status.PENDING,
                None,
                trigger_type=domain.TriggerType.RECOVERY,
                scheduled_for=lost.scheduled_for,
            )
        return True, recovered

    async def adopt(
        self,
        lost: lost_runs.LostExecution,
        *,
        cutoff: datetime,
        started_at: datetime,
        judge_others: bool,
    ) -> bool:
        """PENDING -> PENDING on this node: a queued run of a node that stopped or was lost.
        Returns whether this node now owns it."""
        check(T.ADOPTED, lost.status, Status.PENDING)
        adopted = await lost_runs.adopt_pending(
            self.store,
            lost,
            cutoff=cutoff,
            node_id=self.node_id,
            started_at=started_at,
            judge_others=judge_others,
        )
        if adopted and lost.node_id != self.node_id:
            self._publish(
                lost.id,
                lost.config_id,
                lost.schedule_id,
                T.ADOPTED,
                Status.PENDING,
                Status.PENDING,
                f"from node {lost.node_id}",
                scheduled_for=lost.scheduled_for,
            )
        return adopted

    # -- the delivery ledger's transitions ------------------------------------------------------

    async def settle(self, execution_id: str, status: Status, error: str | None) -> bool:
        """RUNNING -> the final status the delivery ledger found once nothing is pending (any
        node may settle: the retries were made by whichever node claimed them)."""
        check(T.SETTLED, Status.RUNNING, status)
        written = await executions.update_execution(
            self.store,
            execution_id,
            only_if_status=(Status.RUNNING,),
            durable=True,
            status=status,
            finished_at=utcnow(),
            error_message=error,
        )
        if written and self.events.wanted(T.SETTLED):
            execution = await executions.get_execution(self.store, execution_id)
            if execution is not None:
                self._publish_for(execution, T.SETTLED, Status.RUNNING, status, error)
        return written

    async def reopen(self, execution: domain.Execution) -> bool:
        """A finished run -> RUNNING on this node, for a redelivery round (held by this node
        until it settles)."""
        check(T.REOPENED, execution.status, Status.RUNNING)
        now = utcnow()
        moved = await executions.update_execution(
            self.store,
            execution.id,
            only_if_status=(execution.status,),
            status=Status.RUNNING,
            node_id=self.node_id,
            heartbeat_at=now,
            finished_at=None,
        )
        if moved:
            self._publish_for(execution, T.REOPENED, execution.status, Status.RUNNING, None)
        return moved

    # -- events ---------------------------------------------------------------------------------

    def _publish_for(
        self,
        execution: domain.Execution,
        transition: domain.Transition,
        old: Status | None,
        new: Status,
        reason: str | None,
    ) -> None:
        self._publish(
            execution.id,
            execution.config_id,
            execution.schedule_id,
            transition,
            old,
            new,
            reason,
            trigger_type=execution.trigger_type,
            scheduled_for=execution.scheduled_for,
        )

    def _publish(
        self,
        execution_id: str,
        config_id: int,
        schedule_id: int | None,
        transition: domain.Transition,
        old: Status | None,
        new: Status,
        reason: str | None,
        *,
        trigger_type: domain.TriggerType | None = None,
        scheduled_for: datetime | None = None,
    ) -> None:
        if not self.events.wanted(transition):
            return
        self.events.publish(
            LifecycleEvent(
                execution_id=execution_id,
                config_id=config_id,
                schedule_id=schedule_id,
                transition=transition,
                old=old,
                new=new,
                reason=reason,
                node_id=self.node_id,
                at=utcnow(),
                trigger_type=trigger_type,
                scheduled_for=scheduled_for,
            )
        )
