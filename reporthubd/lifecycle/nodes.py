"""This node: its row in the registry, its heartbeat, its stop mark, and the one liveness rule.

    node = Node(store, settings.scheduler, node_id=..., ownership=ownership)
    last_seen = await node.register()          # the last sign of life before this start
    tasks.spawn("node-heartbeat", node.run_heartbeats())
    node.liveness.judges_others()              # the recovery sweep asks before judging
    node.liveness.cutoff()                     # heartbeats older than this are stale
    await node.mark_stopped()                  # a clean stop: others adopt its queued runs

The liveness rule. Another node is lost when its heartbeat is older than
`node_lost_after_seconds`. Only a node in good standing may judge: after a failed store call,
or a gap in its own life (its heartbeats came more than twice the heartbeat interval apart: a
SIGSTOP, a paused VM, a swap storm), every other node's heartbeat may look stale at once,
healthy or not. So a node judges others only once it has been in continuous contact with the
store for `node_lost_after_seconds` since its start or its last such gap. A gap also makes the
node re-validate every run it holds before any further side effect (fencing.Ownership).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from reporthubd import logs
from reporthubd.config import SchedulerSettings
from reporthubd.lifecycle.fencing import Ownership
from reporthubd.store import nodes as node_rows
from reporthubd.store.database import Store, error_line
from reporthubd.timeutil import utcnow

log = logs.get(__name__)


def heartbeat_cutoff(settings: SchedulerSettings, now: datetime | None = None) -> datetime:
    """The one liveness rule's line: a heartbeat older than this belongs to a lost node (or
    run). The recovery sweep, the delivery ledger's orphan settling and the daemon all use it."""
    return (now or utcnow()) - timedelta(seconds=settings.node_lost_after_seconds)


class Liveness:
    """Whether this node may judge others, and when a heartbeat is stale. `now` is wall time
    in seconds (injectable for tests); gaps are measured on the monotonic clock, between the
    ticks of the node's heartbeat loop."""

    def __init__(
        self,
        settings: SchedulerSettings,
        *,
        now: Callable[[], float] = time.time,
        started_at: float | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._now = now
        self._monotonic = monotonic
        self.contact_since = started_at if started_at is not None else now()
        self._last_tick: float | None = None
        self.gaps = 0

    @property
    def lost_after(self) -> float:
        return self.settings.node_lost_after_seconds

    def cutoff(self, now: datetime | None = None) -> datetime:
        """Heartbeats older than this belong to lost nodes (and runs)."""
        return heartbeat_cutoff(self.settings, now)

    def contact_failed(self) -> None:
        """A store call of this node failed (now): judge nobody for a while."""
        self.contact_since = max(self.contact_since, self._now())

    def tick(self) -> bool:
        """The heartbeat loop's mark, at each of its turns. Returns True when the time since the
        previous mark shows a gap in this node's life (more than twice the heartbeat interval)."""
        now = self._monotonic()
        last, self._last_tick = self._last_tick, now
        if last is None or now - last <= 2 * self.settings.heartbeat_interval_seconds:
            return False
        self.gaps += 1
        self.contact_failed()
        log.warning("this node was not running", seconds=round(now - last, 3))
        return True

    def judges_others(self) -> bool:
        """Only after continuous contact for node_lost_after_seconds have the live nodes had the
        time to heartbeat. A gap not yet marked by the heartbeat loop counts too (the sweep may
        wake before it after a freeze)."""
        last = self._last_tick
        interval = self.settings.heartbeat_interval_seconds
        if last is not None and self._monotonic() - last > 2 * interval:
            self.contact_failed()
        return self._now() - self.contact_since >= self.lost_after


class Node:
    def __init__(
        self,
        store: Store,
        settings: SchedulerSettings,
        *,
        node_id: str,
        ownership: Ownership,
        liveness: Liveness | None = None,
        on_contact: Callable[[bool], None] | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.node_id = node_id
        self.ownership = ownership
        self.liveness = liveness or Liveness(settings)
        self._on_contact = on_contact or (lambda ok: None)
        self.store_up = True

    async def register(self) -> datetime | None:
        """Register this node (clearing a stop mark). Returns the latest heartbeat the store
        showed of any node before: where an outage the catch-up names starts."""
        last_seen = await node_rows.last_heartbeat(self.store)
        await node_rows.register_node(self.store, self.node_id, now=utcnow())
        return last_seen

    async def heartbeat(self) -> None:
        """One heartbeat: this node's row, then the runs it holds (each only while still its
        own: a run found lost is stopped by its holder, see fencing.Ownership.revalidate)."""
        try:
            await node_rows.beat_node(self.store, self.node_id, now=utcnow())
            await self.ownership.revalidate()
        except Exception:
            self.liveness.contact_failed()
            raise

    async def run_heartbeats(self) -> None:
        """Forever: a heartbeat every heartbeat_interval_seconds; a gap in this node's life
        (see Liveness.tick) re-validates the held runs at once."""
        interval = self.settings.heartbeat_interval_seconds
        self.liveness.tick()
        while True:
            await asyncio.sleep(interval)
            if self.liveness.tick():
                self.ownership.suspect()
            try:
                await self.heartbeat()
            except Exception as exc:  # store outages are survived, and visible in /readyz
                if self.store_up:
                    log.warning("store unreachable for heartbeat", error=error_line(exc))
                self.store_up = False
            else:
                if not self.store_up:
                    log.info("store reachable again")
                self.store_up = True
            self._on_contact(self.store_up)

    async def mark_stopped(self) -> None:
        await node_rows.mark_node_stopped(self.store, self.node_id, now=utcnow())
