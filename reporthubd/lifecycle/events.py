"""In-process lifecycle events: one per transition of an execution.

    events = Events()
    events.subscribe(on_event)                       # every transition
    events.subscribe(on_end, {Transition.FINISHED})  # only these
    events.publish(LifecycleEvent(...))

Subscribers are plain callables run synchronously, in subscription order, right after the
transition was written: they must be quick and must not block (an async subscriber queues the
event and works on it in a task of its own). A subscriber that raises is logged and does not stop
the others, nor the transition, which has already happened.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime

from reporthubd import domain, logs, metrics

log = logs.get(__name__)

Subscriber = Callable[["LifecycleEvent"], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class LifecycleEvent:
    execution_id: str
    config_id: int
    schedule_id: int | None
    transition: domain.Transition
    old: domain.ExecutionStatus | None
    """None for a new row."""
    new: domain.ExecutionStatus
    reason: str | None
    """The error line, the skip reason, why it was cancelled or lost; None when all went well."""
    node_id: str
    """The node that made the transition."""
    at: datetime
    trigger_type: domain.TriggerType | None = None
    scheduled_for: datetime | None = None


class Events:
    def __init__(self) -> None:
        self._all: list[Subscriber] = []
        self._by_transition: dict[domain.Transition, list[Subscriber]] = {}

    def subscribe(
        self, subscriber: Subscriber, transitions: Collection[domain.Transition] | None = None
    ) -> Callable[[], None]:
        """Call `subscriber` for every event (or only for `transitions`). Returns the
        unsubscribe function."""
        lists = (
            [self._all]
            if transitions is None
            else [self._by_transition.setdefault(t, []) for t in transitions]
        )
        for subscribers in lists:
            subscribers.append(subscriber)

        def unsubscribe() -> None:
            for subscribers in lists:
                if subscriber in subscribers:
                    subscribers.remove(subscriber)

        return unsubscribe

    def wanted(self, transition: domain.Transition) -> bool:
        """Whether anyone listens to `transition`: a hot path (a minute boundary's thousands of
        claims) builds its events only then."""
        return bool(self._all or self._by_transition.get(transition))

    def publish(self, event: LifecycleEvent) -> None:
        for subscriber in (*self._all, *self._by_transition.get(event.transition, ())):
            try:
                subscriber(event)
            except Exception:
                log.exception(
                    "lifecycle subscriber failed",
                    execution_id=event.execution_id,
                    transition=event.transition.value,
                )


def with_metrics() -> Events:
    """A new event bus whose first subscriber keeps the execution counters (metrics.py)."""
    events = Events()
    events.subscribe(metrics.count_transition)
    return events


class RecentTransitions:
    """A subscriber keeping this node's latest transitions, newest first: what the status page
    shows under "Recent state changes"."""

    def __init__(self, limit: int = 50) -> None:
        self._events: collections.deque[LifecycleEvent] = collections.deque(maxlen=limit)

    def __call__(self, event: LifecycleEvent) -> None:
        self._events.appendleft(event)

    def latest(self, count: int | None = None) -> list[LifecycleEvent]:
        events = list(self._events)
        return events if count is None else events[:count]
