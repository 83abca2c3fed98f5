"""The table of allowed transitions (domain.TRANSITIONS) and the lifecycle operations over it.

Every allowed transition is made once, against every store backend, through the operation that
owns it, and each publishes its event; every other (transition, from, to) is refused by the rule,
and an operation on a row outside its transition's source statuses (or, for a held run, of
another node) is refused by the store's conditional write and leaves the row as it was.
"""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import timedelta

import pytest

from reporthubd import domain
from reporthubd.lifecycle.events import Events, LifecycleEvent
from reporthubd.lifecycle.executions import Lifecycle, TransitionRefused, check
from reporthubd.store import claims, executions, nodes
from reporthubd.store import lost as lost_runs
from reporthubd.store.database import Store
from reporthubd.timeutil import utcnow
from tests.engine.conftest import add_config, add_datasource, add_schedule

S = domain.ExecutionStatus
T = domain.Transition
ME = "node-me"
OTHER = "node-other"

ALLOWED = {
    (transition, old, new)
    for transition, (sources, targets) in domain.TRANSITIONS.items()
    for old in sources
    for new in targets
}


def test_every_transition_has_a_row_and_every_other_move_is_refused() -> None:
    assert set(domain.TRANSITIONS) == set(T)
    refused = 0
    for transition, old, new in itertools.product(T, [None, *S], S):
        if (transition, old, new) in ALLOWED:
            check(transition, old, new)
        else:
            with pytest.raises(TransitionRefused, match=transition.value):
                check(transition, old, new)
            refused += 1
    assert refused == len(T) * (len(S) + 1) * len(S) - len(ALLOWED)
    # Nothing leaves a final status except a redelivery's reopening, and nothing but a
    # lifecycle transition reaches RUNNING from one.
    for transition, old, _ in ALLOWED:
        if old is not None and old.is_terminal:
            assert transition is T.REOPENED


async def _row(store: Store, config_id: int, status: S, *, node_id: str = ME) -> domain.Execution:
    execution_id = await executions.insert_execution(
        store, config_id=config_id, trigger_type=domain.TriggerType.MANUAL, node_id=node_id
    )
    assert execution_id is not None
    now = utcnow()
    old = now - timedelta(minutes=10)
    await executions.update_execution(
        store, execution_id, status=status, heartbeat_at=old, started_at=old, created_at=old
    )
    found = await executions.get_execution(store, execution_id)
    assert found is not None and found.status is status
    return found


async def _status(store: Store, execution_id: str) -> S:
    found = await executions.get_execution(store, execution_id)
    assert found is not None
    return found.status


def _lost(execution: domain.Execution) -> lost_runs.LostExecution:
    return lost_runs.LostExecution(
        id=execution.id,
        config_id=execution.config_id,
        schedule_id=execution.schedule_id,
        scheduled_for=execution.scheduled_for,
        status=execution.status,
        node_id=execution.node_id,
        heartbeat_at=execution.heartbeat_at,
        parameters=None,
    )


async def test_every_allowed_transition_is_made_once_with_its_event(store: Store) -> None:
    source = await add_datasource(store, "sqlite", {"path": ":memory:"})
    config = await add_config(store, source, "SELECT 1")
    schedule = await add_schedule(store, config, "* * * * *")
    events = Events()
    seen: list[LifecycleEvent] = []
    events.subscribe(seen.append)
    life = Lifecycle(store, node_id=ME, events=events)
    await nodes.register_node(store, OTHER, now=utcnow() - timedelta(hours=1))
    await nodes.mark_node_stopped(store, OTHER, now=utcnow() - timedelta(hours=1))
    lost_args = {"cutoff": utcnow() - timedelta(minutes=1), "started_at": utcnow()}

    # created: a manual run, and a schedule's fire claimed as SKIPPED
    created = await life.create(config_id=config, trigger_type=domain.TriggerType.MANUAL)
    assert await _status(store, created) is S.PENDING
    fire = claims.FireClaim(
        schedule_id=schedule, config_id=config, scheduled_for=utcnow(), skipped_reason="missed"
    )
    ours, _ = await claims.claim_fires(store, [fire], node_id=ME)
    life.claimed(ours)
    assert await _status(store, ours[0].execution_id) is S.SKIPPED

    # adopted: a queued run of a node that stopped
    queued = await _row(store, config, S.PENDING, node_id=OTHER)
    assert await life.adopt(_lost(queued), judge_others=True, **lost_args)
    adopted = await executions.get_execution(store, queued.id)
    assert adopted is not None and adopted.node_id == ME and adopted.status is S.PENDING

    # started, then each end of a run of this node
    pending = await _row(store, config, S.PENDING)
    assert await life.start(pending)
    assert await _status(store, pending.id) is S.RUNNING
    for end in (S.COMPLETED, S.PARTIAL, S.FAILED, S.TIMEOUT, S.CANCELLED):
        running = await _row(store, config, S.RUNNING)
        assert await life.finish(running, end, error=None if end is S.COMPLETED else "why")
        assert await _status(store, running.id) is end

    # failed before it started; cancelled while queued
    unstartable = await _row(store, config, S.PENDING)
    assert await life.fail_unstarted(unstartable, "report config 1 is inactive")
    assert await _status(store, unstartable.id) is S.FAILED
    queued_here = await _row(store, config, S.PENDING)
    assert await life.cancel_pending(queued_here.id, "cancelled by the API")
    assert await _status(store, queued_here.id) is S.CANCELLED
    # waited for its dependencies past its deadline (wait_policy skip)
    expired = await _row(store, config, S.PENDING)
    assert await life.skip_waiting(expired.id, "waited until 07:00 for report 'load'")
    assert await _status(store, expired.id) is S.SKIPPED

    # marked lost: a running run whose node went silent, a queued one of a stopped node
    silent = await _row(store, config, S.RUNNING, node_id=OTHER)
    marked, recovery = await life.mark_lost(
        _lost(silent), reason="node lost", recover=True, judge_others=True, **lost_args
    )
    assert marked and recovery is not None
    assert await _status(store, silent.id) is S.FAILED
    assert await _status(store, recovery) is S.PENDING
    orphan = await _row(store, config, S.PENDING, node_id=OTHER)
    marked, _ = await life.mark_lost(
        _lost(orphan), reason="node lost", recover=False, judge_others=True, **lost_args
    )
    assert marked and await _status(store, orphan.id) is S.FAILED

    # settled by the ledger; reopened for a redelivery
    for end in (S.COMPLETED, S.PARTIAL, S.FAILED):
        waiting = await _row(store, config, S.RUNNING)
        assert await life.settle(waiting.id, end, None if end is S.COMPLETED else "delivery 1: no")
        assert await _status(store, waiting.id) is end
        finished = await executions.get_execution(store, waiting.id)
        assert finished is not None
        assert await life.reopen(finished)
        assert await _status(store, waiting.id) is S.RUNNING

    made = Counter((e.transition, e.old, e.new) for e in seen)
    assert set(made) == ALLOWED
    # each once; a new PENDING row twice: the manual run and the recovery of the silent run
    assert made.pop((T.CREATED, None, S.PENDING)) == 2
    assert set(made.values()) == {1}
    assert all(e.node_id == ME and e.config_id == config for e in seen)
    skip = next(e for e in seen if e.new is S.SKIPPED)
    assert skip.reason == "missed" and skip.schedule_id == schedule


async def test_operations_refuse_rows_outside_their_sources(store: Store) -> None:
    source = await add_datasource(store, "sqlite", {"path": ":memory:"})
    config = await add_config(store, source, "SELECT 1")
    events = Events()
    seen: list[LifecycleEvent] = []
    events.subscribe(seen.append)
    life = Lifecycle(store, node_id=ME, events=events)

    running = await _row(store, config, S.RUNNING)
    assert not await life.start(running)  # not PENDING any more
    assert not await life.fail_unstarted(running, "x")
    assert not await life.cancel_pending(running.id, "x")
    done = await _row(store, config, S.COMPLETED)
    assert not await life.finish(done, S.FAILED, error="late")
    assert not await life.settle(done.id, S.FAILED, "late")
    assert not await life.record(done, row_count=5)
    theirs = await _row(store, config, S.RUNNING, node_id=OTHER)
    assert not await life.finish(theirs, S.COMPLETED), "fenced: another node's run"
    assert not await life.record(theirs, row_count=5)
    for row in (running, done, theirs):
        found = await executions.get_execution(store, row.id)
        assert found is not None and found.status is row.status and found.row_count is None

    with pytest.raises(TransitionRefused):
        await life.finish(running, S.RUNNING)
    with pytest.raises(TransitionRefused):
        await life.reopen(running)  # RUNNING is no final status
    with pytest.raises(TransitionRefused):
        await life.settle(running.id, S.TIMEOUT, None)
    with pytest.raises(TransitionRefused):
        await life.record(running, status=S.COMPLETED)
    assert seen == []
