"""Fencing: a run's side effects happen only while this node still owns the run.

A node owns a run while the run's row is RUNNING with this node's id. Another node may take that
away (it marks the run FAILED "node lost" once this node's heartbeats stop, for instance while
this node is frozen), and this node learns it only from the store. So:

- `confirm(execution_id)` comes right before each side effect (the file recorded as the run's,
  each delivery attempt, each ledger row saying something was delivered, a deliverer's own commit
  point): one conditional write by primary key that refreshes the run's heartbeat only while the
  row is still RUNNING and this node's. It raises `OwnershipLost` otherwise; the holder then stops
  the run without delivering and logs why.
- `revalidate()` (every heartbeat, and at once after a gap in this node's life) refreshes every
  held run the same way and tells the holders of the runs that were lost (`on_lost`), so that a
  run is stopped even between side effects.

While the store cannot be reached at all, `confirm` lets the run go on (a store outage must not
lose finished work: its records wait in the journal); a node cut off from the store while the
others still reach it (a partition) may then deliver a run they recovered. The check and the act
are two steps: a node frozen between them (microseconds, in-process) still acts once when it
wakes. Webhooks carry an Idempotency-Key for that case; for the other methods it
is the remaining window, documented in docs/operators.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from reporthubd import logs
from reporthubd.domain import OwnershipLost
from reporthubd.store import executions, journal
from reporthubd.store import nodes as node_rows
from reporthubd.store.database import Store, error_line
from reporthubd.timeutil import utcnow

log = logs.get(__name__)

LOST_REASON = "this node no longer owns the run (another node marked it lost, or it ended)"


@dataclass(slots=True)
class _Held:
    on_lost: Callable[[str], None]


class Ownership:
    """The runs this process holds, and the fencing checks over them."""

    def __init__(self, store: Store, *, node_id: str) -> None:
        self.store = store
        self.node_id = node_id
        self._held: dict[str, _Held] = {}
        self._lost: set[str] = set()
        self._ending: set[str] = set()
        """Held runs whose final status is being written (`ending`)."""
        self.suspected = False
        """A gap in this node's life was seen and not yet answered by a revalidation."""

    def hold(self, execution_id: str, on_lost: Callable[[str], None] | None = None) -> None:
        """This process now runs `execution_id` (its row was moved to RUNNING with this node's
        id); `on_lost(reason)` is called when a revalidation finds it lost."""
        self._lost.discard(execution_id)
        self._held[execution_id] = _Held(on_lost=on_lost or (lambda reason: None))

    def release(self, execution_id: str) -> None:
        self._held.pop(execution_id, None)
        self._lost.discard(execution_id)
        self._ending.discard(execution_id)

    def ending(self, execution_id: str) -> None:
        """The run's final status is being written (then it is released): a revalidation that
        finds its row ended meanwhile does not call it lost."""
        if execution_id in self._held:
            self._ending.add(execution_id)

    def holds(self, execution_id: str) -> bool:
        return execution_id in self._held

    def was_lost(self, execution_id: str) -> bool:
        return execution_id in self._lost

    @property
    def held(self) -> list[str]:
        return list(self._held)

    def suspect(self) -> None:
        """A gap in this node's life: every held run is re-validated before its next side
        effect (confirm always writes; this also makes the next revalidation log it)."""
        self.suspected = True

    async def confirm(self, execution_id: str, *, what: str) -> None:
        """Raise OwnershipLost unless the run is still RUNNING and this node's (one conditional
        write, which also refreshes its heartbeat). `what` names the side effect, for the log."""
        if execution_id in self._lost:
            raise OwnershipLost(f"{LOST_REASON}: {what} not done")
        try:
            owned = await executions.beat_owned_run(
                self.store, self.node_id, execution_id, now=utcnow()
            )
        except Exception as exc:
            if not journal.unreachable(exc):
                raise
            # A store outage: the run goes on to its end and its records wait in the journal
            # (docs/operators.md, "Store outages"). Nobody can mark it lost meanwhile unless the
            # outage is this node's alone (a partition): the window named in the docs.
            log.warning(
                "ownership not confirmed: store unreachable; going on",
                execution_id=execution_id,
                side_effect=what,
                error=error_line(exc),
            )
            return
        if owned:
            return
        self._lose(execution_id, what)
        raise OwnershipLost(f"{LOST_REASON}: {what} not done")

    def refused(self, execution_id: str, what: str) -> OwnershipLost:
        """A fenced write of the run (conditional on its being RUNNING and this node's, as
        `confirm` is) found it no longer this node's: the run is lost as when `confirm` finds
        it so; the caller raises what this returns."""
        self._lose(execution_id, what)
        return OwnershipLost(f"{LOST_REASON}: {what} not done")

    async def revalidate(self) -> set[str]:
        """Refresh every held run's heartbeat while it is still this node's; the lost ones are
        marked and their holders told. Returns the ids found lost."""
        ids = list(self._held)
        suspected, self.suspected = self.suspected, False
        if not ids:
            return set()
        lost = await node_rows.beat_runs(self.store, self.node_id, ids, now=utcnow())
        # A run that ended meanwhile (Lifecycle.finish marks it ending, then releases it) is no
        # longer RUNNING, and not lost (10,000 short runs showed 358 such false alarms).
        lost &= set(self._held) - self._ending
        if suspected:
            log.warning("held runs re-validated after a gap", held=len(ids), lost=len(lost))
        for execution_id in lost:
            self._lose(execution_id, "the run")
        return lost

    def _lose(self, execution_id: str, what: str) -> None:
        if execution_id in self._lost:
            return
        self._lost.add(execution_id)
        held = self._held.get(execution_id)
        log.warning(
            "run lost: stopping it without delivering",
            execution_id=execution_id,
            node_id=self.node_id,
            side_effect=what,
            reason=LOST_REASON,
        )
        if held is not None:
            held.on_lost(LOST_REASON)
