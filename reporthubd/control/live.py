"""The console's live feed: this node's lifecycle events, fanned out to each open event stream
through a bounded queue of its own.

    feed = LiveFeed(events)              # subscribes to the daemon's lifecycle bus
    with feed.subscribe() as stream:     # one per open /api/console/events
        batch = await stream.next(15)
    feed.close()                         # the app shuts down: every stream ends

Events are published on the event loop (the lifecycle's operations run on it), where the
queues are filled. A lifecycle subscriber must be quick and must not block (lifecycle/events.py):
`LiveFeed` only appends the event to each stream's queue. A stream holds at most `limit`
events: a client that does not read (a slow phone, a stalled tab: its socket's buffer full, so
its handler waits in `write`) cannot grow memory: on overflow its backlog is dropped and the
stream is marked `overflowed`, and its handler sends one fresh snapshot from the store instead
(the store is the truth; the events are only news).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from reporthubd.lifecycle.events import Events, LifecycleEvent

STREAM_EVENTS = 256
"""Events a stream holds for its client before it is marked overflowed (a minute boundary
claims thousands of fires at once: the client then gets one snapshot, not thousands of lines)."""


def event_data(event: LifecycleEvent) -> dict[str, Any]:
    """An event as the page reads it (no secrets: ids, statuses, the reason line)."""
    return {
        "execution_id": event.execution_id,
        "config_id": event.config_id,
        "schedule_id": event.schedule_id,
        "transition": event.transition.value,
        "old": event.old.value if event.old is not None else None,
        "new": event.new.value,
        "terminal": event.new.is_terminal,
        "reason": event.reason,
        "node_id": event.node_id,
        "at": event.at.isoformat(),
        "trigger_type": event.trigger_type.value if event.trigger_type else None,
        "scheduled_for": event.scheduled_for.isoformat() if event.scheduled_for else None,
    }


@dataclass(slots=True)
class Batch:
    events: list[LifecycleEvent] = field(default_factory=list)
    overflowed: bool = False
    """Events were dropped since the last batch: re-read the state from the store."""
    closed: bool = False
    """The feed was closed (the control plane stops): end the stream."""


class Stream:
    """One client's bounded queue. Filled on the loop by the feed; read by its handler."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._events: collections.deque[LifecycleEvent] = collections.deque()
        self._overflowed = False
        self._closed = False
        self._ready = asyncio.Event()

    def put(self, event: LifecycleEvent) -> None:
        if len(self._events) >= self._limit:
            self._events.clear()
            self._overflowed = True
        else:
            self._events.append(event)
        self._ready.set()

    def close(self) -> None:
        self._closed = True
        self._ready.set()

    @property
    def queued(self) -> int:
        return len(self._events)

    async def next(self, wait_seconds: float) -> Batch:
        """What arrived since the last call, waiting up to `wait_seconds` for something (an
        empty batch when nothing did)."""
        if not self._ready.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), wait_seconds)
        self._ready.clear()
        batch = Batch(list(self._events), self._overflowed, self._closed)
        self._events.clear()
        self._overflowed = False
        return batch


class LiveFeed:
    def __init__(self, events: Events, *, limit: int = STREAM_EVENTS) -> None:
        self._limit = limit
        self._streams: set[Stream] = set()
        self._closed = False
        self._unsubscribe = events.subscribe(self._publish)

    def _publish(self, event: LifecycleEvent) -> None:
        for stream in self._streams:
            stream.put(event)

    @property
    def streams(self) -> int:
        return len(self._streams)

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[Stream]:
        stream = Stream(self._limit)
        if self._closed:
            stream.close()
        self._streams.add(stream)
        try:
            yield stream
        finally:
            self._streams.discard(stream)

    def close(self) -> None:
        """End every stream now and take no more events (the app shuts down)."""
        self._closed = True
        self._unsubscribe()
        for stream in self._streams:
            stream.close()
