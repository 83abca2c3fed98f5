"""Lifecycle events: subscriptions (all, or some transitions), a failing subscriber, the recent
transitions the status page shows, and the metrics subscriber."""

from __future__ import annotations

from reporthubd import domain, metrics
from reporthubd.lifecycle.events import Events, LifecycleEvent, RecentTransitions, with_metrics
from reporthubd.timeutil import utcnow

S = domain.ExecutionStatus
T = domain.Transition


def _event(
    n: int, transition: domain.Transition = T.FINISHED, new: S = S.COMPLETED
) -> LifecycleEvent:
    return LifecycleEvent(
        execution_id=f"e{n}",
        config_id=1,
        schedule_id=None,
        transition=transition,
        old=S.RUNNING,
        new=new,
        reason=None,
        node_id="n",
        at=utcnow(),
    )


def test_subscribers_get_what_they_asked_for_and_a_failing_one_stops_nobody() -> None:
    events = Events()
    everything: list[str] = []
    failures: list[str] = []

    def broken(event: LifecycleEvent) -> None:
        raise RuntimeError("subscriber bug")

    events.subscribe(broken)
    unsubscribe = events.subscribe(lambda e: everything.append(e.execution_id))
    events.subscribe(lambda e: failures.append(e.execution_id), {T.FAILED})
    assert events.wanted(T.STARTED)
    events.publish(_event(1))
    events.publish(_event(2, T.FAILED, S.FAILED))
    unsubscribe()
    events.publish(_event(3, T.FAILED, S.FAILED))
    assert everything == ["e1", "e2"]
    assert failures == ["e2", "e3"]

    only_failed = Events()
    only_failed.subscribe(lambda e: None, {T.FAILED})
    assert only_failed.wanted(T.FAILED) and not only_failed.wanted(T.CREATED)


def test_recent_transitions_newest_first_and_bounded() -> None:
    recent = RecentTransitions(limit=3)
    for n in range(5):
        recent(_event(n))
    assert [e.execution_id for e in recent.latest()] == ["e4", "e3", "e2"]
    assert [e.execution_id for e in recent.latest(1)] == ["e4"]


def test_metrics_count_transitions_and_final_statuses() -> None:
    def value(name: str, **labels: str) -> float:
        found = metrics.REGISTRY.get_sample_value(name, labels)
        return found or 0.0

    before_t = value(
        "reporthubd_execution_transitions_total", transition="timed_out", status="TIMEOUT"
    )
    before_e = value("reporthubd_executions_total", status="TIMEOUT")
    before_started = value("reporthubd_executions_total", status="RUNNING")
    events = with_metrics()
    events.publish(_event(1, T.TIMED_OUT, S.TIMEOUT))
    events.publish(_event(2, T.STARTED, S.RUNNING))
    assert (
        value("reporthubd_execution_transitions_total", transition="timed_out", status="TIMEOUT")
        == before_t + 1
    )
    assert value("reporthubd_executions_total", status="TIMEOUT") == before_e + 1
    assert value("reporthubd_executions_total", status="RUNNING") == before_started
