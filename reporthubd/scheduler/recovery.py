"""The lost-execution sweep: runs no live node owns are marked FAILED ("node lost") and, where
configured, run again (trigger_type recovery); queued runs of a stopped node are adopted.

Whether this node may judge other nodes at all is the one liveness rule of
lifecycle/nodes.py (`Liveness`): after an outage, or a gap in this node's own life (a freeze),
every other node's heartbeat may look stale at once, healthy or not, so other nodes' runs are
judged only once this node has been in continuous contact for `node_lost_after_seconds` (since
its start, its last failed store call, which every part of the scheduler reports through
`store_failed`, or its last gap). This node's own leftovers from before its start are always
judged. The state changes themselves are the lifecycle's (`mark_lost`, `adopt`).

The sweep runs once at start (before the loop) and then every `heartbeat_interval_seconds` as
its own supervised task (`run`); a failed sweep is logged and retried at the next interval.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime

from reporthubd import domain, logs
from reporthubd.config import SchedulerSettings
from reporthubd.lifecycle.executions import Lifecycle
from reporthubd.lifecycle.nodes import Liveness
from reporthubd.store import lost as lost_runs
from reporthubd.store.database import Store, error_line, lock_wait_timed_out
from reporthubd.timeutil import utcnow

log = logs.get(__name__)

# Adopted queued runs remembered (so each is submitted once while it waits for a slot).
ADOPTED_REMEMBERED = 10_000


class Recovery:
    def __init__(
        self,
        *,
        store: Store,
        config: SchedulerSettings,
        node_id: str,
        started_at: datetime,
        liveness: Liveness,
        lifecycle: Lifecycle,
        submit: Callable[[str], Awaitable[None]],
    ) -> None:
        self.store = store
        self.config = config
        self.node_id = node_id
        self.started_at = started_at
        self.liveness = liveness
        self.lifecycle = lifecycle
        self.submit = submit
        self.recovered_count = 0
        self.adopted_count = 0
        self._adopted: dict[str, None] = {}  # ids submitted by _adopt, oldest first

    async def run(self) -> None:
        """Sweep every heartbeat interval, forever."""
        while True:
            await asyncio.sleep(self.config.heartbeat_interval_seconds)
            try:
                await self.sweep()
            except Exception as exc:  # survived; retried at the next interval
                log.warning("lost-execution sweep failed", error=error_line(exc))

    def store_failed(self) -> None:
        """A store call of this node failed (now): see Liveness.contact_failed."""
        self.liveness.contact_failed()

    def judges_others(self) -> bool:
        """Whether other nodes' heartbeats are judged now: see Liveness.judges_others."""
        return self.liveness.judges_others()

    async def sweep(self) -> int:
        """Mark executions no live node owns FAILED ("node lost") and, if configured, run them
        again (trigger_type recovery). Returns how many this node recovered or failed. Other
        nodes' executions are judged only when `judges_others()`; this node's own leftovers
        from before its start always are. A failure counts as a failed store call."""
        try:
            return await self._sweep()
        except Exception:
            self.store_failed()
            raise

    async def _sweep(self) -> int:
        config = self.config
        if self.store.journal is not None and self.store.journal.pending:
            # This node's own outcomes still wait to be written: its heartbeats are stale and
            # its finished runs still show RUNNING. Judge nothing until the journal is flushed.
            return 0
        judge_others = self.judges_others()
        cutoff = self.liveness.cutoff(utcnow())
        lost = await lost_runs.find_lost(
            self.store,
            cutoff=cutoff,
            node_id=self.node_id,
            started_at=self.started_at,
            judge_others=judge_others,
        )
        done = 0
        for execution in lost:
            try:
                if execution.status is domain.ExecutionStatus.PENDING:
                    done += await self._adopt(execution, cutoff, judge_others)
                    continue
                reason = _lost_reason(execution, self.node_id)
                marked, recovered = await self.lifecycle.mark_lost(
                    execution,
                    cutoff=cutoff,
                    started_at=self.started_at,
                    reason=reason,
                    recover=config.recover_lost_executions,
                    judge_others=judge_others,
                )
            except Exception as exc:
                if not lock_wait_timed_out(exc):
                    raise
                # Its row is locked by a session that does not let go (a frozen node in the
                # middle of a transaction, until the server ends it): a conflict, not an
                # outage; the next sweep tries again.
                log.warning(
                    "lost execution locked by another session; retried at the next sweep",
                    execution_id=execution.id,
                    lost_node=execution.node_id,
                )
                continue
            if not marked:
                continue  # another node judged it first
            done += 1
            log.warning(
                "execution lost",
                execution_id=execution.id,
                lost_node=execution.node_id,
                recovered_as=recovered,
            )
            if recovered is not None:
                self.recovered_count += 1
                await self.submit(recovered)
        return done

    async def _adopt(
        self, execution: lost_runs.LostExecution, cutoff: datetime, judge_others: bool
    ) -> int:
        """A queued run no live node owns (its node stopped, or this node's previous process
        claimed it) never started: this node takes it over and runs it, same row, still
        PENDING. Each is submitted once per process (a queued one is listed again meanwhile)."""
        if execution.id in self._adopted:
            return 0
        adopted = await self.lifecycle.adopt(
            execution, cutoff=cutoff, started_at=self.started_at, judge_others=judge_others
        )
        if not adopted:
            return 0  # another node took it first
        self._adopted[execution.id] = None
        while len(self._adopted) > ADOPTED_REMEMBERED:
            del self._adopted[next(iter(self._adopted))]
        self.adopted_count += 1
        log.info("queued execution adopted", execution_id=execution.id, from_node=execution.node_id)
        await self.submit(execution.id)
        return 1


def _lost_reason(execution: lost_runs.LostExecution, own_node: str) -> str:
    if execution.node_id == own_node:
        return f"node lost: node {own_node} restarted before the run ended"
    if execution.status is domain.ExecutionStatus.PENDING:
        return f"node lost: node {execution.node_id} stopped before starting the run"
    beat = execution.heartbeat_at.isoformat() if execution.heartbeat_at else "never"
    return f"node lost: node {execution.node_id} stopped heartbeating (last heartbeat {beat})"
