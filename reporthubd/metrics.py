"""Prometheus metrics (prometheus-client), one registry for the process.

Counters and histograms are updated where the thing happens (engine, scheduler, deliverers);
gauges that describe current state are read from the components at scrape time, through
`observe_gauges`, so they are never stale.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

EXECUTIONS = Counter(
    "reporthubd_executions_total",
    "Executions that reached a final status (a run's end, a settle, a fire claimed as SKIPPED, a "
    "run marked lost), by that status.",
    ["status"],
    registry=REGISTRY,
)
TRANSITIONS = Counter(
    "reporthubd_execution_transitions_total",
    "State changes of executions made by this node, by transition and new status.",
    ["transition", "status"],
    registry=REGISTRY,
)
EXECUTION_SECONDS = Histogram(
    "reporthubd_execution_duration_seconds",
    "Wall time of executions from start to finish.",
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
    registry=REGISTRY,
)
ROWS_WRITTEN = Counter(
    "reporthubd_rows_written_total", "Rows written to report files.", registry=REGISTRY
)
BYTES_WRITTEN = Counter(
    "reporthubd_bytes_written_total", "Bytes of report files produced.", registry=REGISTRY
)
DELIVERIES = Counter(
    "reporthubd_deliveries_total",
    "Delivery attempts, by method and outcome.",
    ["method", "outcome"],
    registry=REGISTRY,
)
FIRE_LATENESS = Histogram(
    "reporthubd_fire_lateness_seconds",
    "Claim commit time minus due time of schedule fires claimed while due (decided within 5 s "
    "of their time); catch-up fires after downtime are counted apart, in "
    "reporthubd_catch_up_fire_lateness_seconds.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)
CATCH_UP_LATENESS = Histogram(
    "reporthubd_catch_up_fire_lateness_seconds",
    "Claim commit time minus due time of fires run late by their misfire policy: missed while no "
    "daemon ran, the store was down or the scheduler was blocked, and caught up afterwards.",
    buckets=(5, 10, 30, 60, 120, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 86400, 7 * 86400),
    registry=REGISTRY,
)
MISSED_FIRES = Counter(
    "reporthubd_missed_fires_total",
    "Fires missed and recorded as SKIPPED, by policy.",
    ["policy"],
    registry=REGISTRY,
)
PAUSED_FIRES = Counter(
    "reporthubd_paused_fires",
    "Fires of paused schedules, recorded as SKIPPED (not counted as missed).",
    registry=REGISTRY,
)
CALENDAR_SKIPPED_FIRES = Counter(
    "reporthubd_calendar_skipped_fires",
    "Fires on a closed day of their business calendar (policy skip), recorded as SKIPPED "
    "(not counted as missed).",
    registry=REGISTRY,
)
NOTICES = Counter(
    "reporthubd_notices",
    "Notices recorded by this node, by event: each notice is recorded by one node only, so the "
    "sum over nodes counts each notice once.",
    ["event"],
    registry=REGISTRY,
)
NOTICE_SENDS = Counter(
    "reporthubd_notice_sends",
    "Attempts to send a notice made by this node, by event and outcome (sent, retrying, failed).",
    ["event", "outcome"],
    registry=REGISTRY,
)
NOTICE_DELAY = Histogram(
    "reporthubd_notice_delay_seconds",
    "From a notice's recording to its arrival at the delivery method's server.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
    registry=REGISTRY,
)
LATE_RUNS = Counter(
    "reporthubd_late_runs",
    "Schedule fires not COMPLETED by their schedule's deadline (one per fire across nodes).",
    registry=REGISTRY,
)
SUSPENDED_SCHEDULES = Counter(
    "reporthubd_schedules_suspended",
    "Schedules this node paused after their rule's suspend_after consecutive failures.",
    registry=REGISTRY,
)

RETRIES_PENDING = Gauge(
    "reporthubd_delivery_retries_pending", "Delivery retries waiting.", registry=REGISTRY
)
QUEUE_DEPTH = Gauge(
    "reporthubd_executions_queued", "Executions waiting for a slot.", registry=REGISTRY
)
RUNNING = Gauge(
    "reporthubd_executions_running", "Executions running on this node.", registry=REGISTRY
)
SCHEDULES_LOADED = Gauge(
    "reporthubd_schedules_loaded", "Schedules loaded and firing.", registry=REGISTRY
)
SCHEDULES_DISABLED = Gauge(
    "reporthubd_schedules_disabled",
    "Schedules disabled by an invalid cron or zone.",
    registry=REGISTRY,
)
STORE_UP = Gauge(
    "reporthubd_store_up", "1 when the store answered the last check.", registry=REGISTRY
)
JOURNAL_PENDING = Gauge(
    "reporthubd_store_journal_pending",
    "Store writes waiting in the local journal for the store to answer again.",
    registry=REGISTRY,
)
HEARTBEAT_AGE = Gauge(
    "reporthubd_node_heartbeat_age_seconds",
    "Seconds since this node's last heartbeat.",
    registry=REGISTRY,
)


class Transitioned(Protocol):
    """What the lifecycle's events say (lifecycle.events.LifecycleEvent)."""

    @property
    def transition(self) -> str: ...
    @property
    def new(self) -> str: ...


_TRANSITION_COUNTERS: dict[tuple[str, str], tuple[Any, Any | None]] = {}


def count_transition(event: Transitioned) -> None:
    """The lifecycle subscriber that keeps the execution counters. It runs for every claim of
    a minute boundary's thousands: each (transition, status) pair's labelled counters are
    looked up once (prometheus-client's labels() takes a lock and builds a key each call)."""
    key = (event.transition, event.new)
    counters = _TRANSITION_COUNTERS.get(key)
    if counters is None:
        final = event.new not in ("PENDING", "RUNNING")
        counters = (
            TRANSITIONS.labels(event.transition, event.new),
            EXECUTIONS.labels(event.new) if final else None,
        )
        _TRANSITION_COUNTERS[key] = counters
    counters[0].inc()
    if counters[1] is not None:
        counters[1].inc()


def observe_gauges(readers: dict[Gauge, Callable[[], float]]) -> None:
    """Make each gauge read its value from a component at scrape time."""
    for gauge, read in readers.items():
        gauge.set_function(read)


def render() -> bytes:
    return generate_latest(REGISTRY)


__all__ = ["CONTENT_TYPE", "REGISTRY", "observe_gauges", "render"]
