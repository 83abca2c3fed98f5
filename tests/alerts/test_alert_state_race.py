"""The alert state's transition is atomic (issue 17, item 2: alert state in the store across
nodes): two runs of one on_transition report that end at once on two nodes (here: two Stores,
two connection pools, on one real MariaDB or PostgreSQL database) both read the old state.
The compare-and-set in store/alerts.transition lets one of them move it; the other finds it
moved, judges again on the state the first left, and records that decision:

- both true after false: one `deliver` ("turned true"), one `skip` ("still holds"), never two
  alerts;
- one true, one false after false, the true one settling first: the false one, judged stale
  as "still does not hold", becomes `resolved` (the transition back is not lost);
- on_change, two runs with the same new content: the first to settle claims the content as
  delivered at once, the second is judged again and not sent ("same content"); when no
  delivery took the first's file, the claim is given back (the next run sends that content).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from reporthubd import alert_rules
from reporthubd.config import StoreSettings
from reporthubd.engine import alerting
from reporthubd.store import alerts, migrate
from reporthubd.store.database import Store
from tests import servers

CONFIG_ID = 41
ALERT = alert_rules.parse_alert(
    {
        "mode": "on_transition",
        "condition": {"any_row": {"column": "status", "op": "==", "value": "error"}},
    },
    key="alert",
)
ROUNDS = 6


@pytest.fixture(params=["mariadb", "postgresql"])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    database = servers.create_database(str(request.param), tmp_path)
    yield database.url
    database.drop()


@pytest.fixture
async def two_nodes(shared_url: str) -> AsyncIterator[list[Store]]:
    stores = [Store(StoreSettings(url=shared_url)) for _ in range(2)]
    try:
        for store in stores:
            await store.start()
        await migrate.upgrade(stores[0])
        yield stores
    finally:
        for store in stores:
            await store.stop()


def _evaluator(error: bool) -> alert_rules.Evaluator:
    assert ALERT.condition is not None
    evaluator = alert_rules.Evaluator(ALERT.condition)
    evaluator.feed(["status"], [("ok",), ("error",)] if error else [("ok",)])
    return evaluator


class Run:
    """One run's alert step as the pipeline takes it: judge, then settle (recording each
    decision it writes on its execution)."""

    def __init__(self, store: Store, execution_id: str, *, error: bool) -> None:
        self.store = store
        self.execution_id = execution_id
        self.evaluator = _evaluator(error)
        self.recorded: list[dict[str, Any]] = []
        self.judged: alerting.Judged | None = None

    async def judge(self) -> None:
        self.judged = await alerting.judge(
            self.store, CONFIG_ID, ALERT, self.evaluator, file_sha256=None
        )

    async def record(self, **columns: Any) -> bool:
        self.recorded.append(columns)
        return True

    async def settle(self) -> str:
        assert self.judged is not None
        settled = await alerting.settle(
            self.store,
            CONFIG_ID,
            self.execution_id,
            ALERT,
            self.evaluator,
            self.judged,
            file_sha256=None,
            record=self.record,
        )
        assert settled is not None
        assert self.recorded[-1]["alert_decision"] == settled.label
        self.judged = settled  # as the pipeline keeps it
        return settled.label


async def _reset(store: Store, *, truth: bool, round_: int) -> None:
    previous = (await alerts.state(store, CONFIG_ID)).last_execution_id
    assert await alerts.transition(
        store, CONFIG_ID, previous=previous, execution_id=f"reset-{round_}", truth=truth
    )


async def test_two_runs_ending_at_once_send_one_transition(two_nodes: list[Store]) -> None:
    a, b = two_nodes
    for n in range(ROUNDS):
        await _reset(a, truth=False, round_=n)
        runs = [Run(a, f"a-{n}", error=True), Run(b, f"b-{n}", error=True)]
        # Both read the old state (false) before either moves it...
        await asyncio.gather(*(run.judge() for run in runs))
        assert all(run.judged is not None and run.judged.label == "deliver" for run in runs)
        # ...then both settle at once, each through its own node's connections.
        labels = sorted(await asyncio.gather(*(run.settle() for run in runs)))
        assert labels == ["deliver", "skip"], (n, labels)
        (loser,) = [run for run in runs if run.recorded[-1]["alert_decision"] == "skip"]
        assert [r["alert_decision"] for r in loser.recorded] == ["deliver", "skip"]
        assert "still holds" in loser.recorded[-1]["alert_reason"]
        state = await alerts.state(b, CONFIG_ID)
        assert state.last_truth is True
        assert state.last_execution_id == loser.execution_id  # the later of the two settled


async def test_a_stale_decision_is_judged_again_and_the_resolution_is_kept(
    two_nodes: list[Store],
) -> None:
    a, b = two_nodes
    await _reset(a, truth=False, round_=0)
    turned_true = Run(a, "true-run", error=True)
    turned_false = Run(b, "false-run", error=False)
    await asyncio.gather(turned_true.judge(), turned_false.judge())
    assert turned_false.judged is not None and turned_false.judged.label == "skip"
    assert await turned_true.settle() == "deliver"
    # Judged on the old state ("still does not hold"); the state is now true: resolved.
    assert await turned_false.settle() == "resolved"
    assert [r["alert_decision"] for r in turned_false.recorded] == ["skip", "resolved"]
    state = await alerts.state(a, CONFIG_ID)
    assert (state.last_truth, state.last_execution_id) == (False, "false-run")
    # Settling the same run again (the pipeline does after a check query) moves nothing.
    assert await turned_false.settle() == "resolved"


async def test_a_run_no_longer_owned_moves_nothing(two_nodes: list[Store]) -> None:
    a, _ = two_nodes
    await _reset(a, truth=False, round_=0)
    run = Run(a, "lost-run", error=True)
    await run.judge()
    assert run.judged is not None

    async def not_owned(**columns: Any) -> bool:
        return False

    settled = await alerting.settle(
        a, CONFIG_ID, "lost-run", ALERT, run.evaluator, run.judged, file_sha256=None,
        record=not_owned,
    )  # fmt: skip
    assert settled is None
    assert (await alerts.state(a, CONFIG_ID)).last_execution_id == "reset-0"


CHANGE = alert_rules.parse_alert({"mode": "on_change"}, key="alert")


async def _change(store: Store, execution_id: str, sha: str) -> alerting.Judged:
    return await alerting.judge(store, CONFIG_ID, CHANGE, None, file_sha256=sha)


async def _settle_change(
    store: Store, execution_id: str, judged: alerting.Judged, sha: str
) -> alerting.Judged:
    async def record(**columns: Any) -> bool:
        return True

    settled = await alerting.settle(
        store, CONFIG_ID, execution_id, CHANGE, None, judged, file_sha256=sha, record=record
    )
    assert settled is not None
    return settled


async def test_on_change_sends_one_of_two_runs_with_the_same_new_content(
    two_nodes: list[Store],
) -> None:
    a, b = two_nodes
    assert await alerts.transition(a, CONFIG_ID, previous=None, execution_id="r0", truth=None)
    await alerts.save_delivered(a, CONFIG_ID, execution_id="r0", delivered_sha256="old")
    for n, took in enumerate((True, False)):
        sha = f"new-{n}"
        judged = await asyncio.gather(_change(a, f"a-{n}", sha), _change(b, f"b-{n}", sha))
        assert [j.label for j in judged] == ["deliver", "deliver"]  # both saw the old file
        settled = await asyncio.gather(
            _settle_change(a, f"a-{n}", judged[0], sha), _settle_change(b, f"b-{n}", judged[1], sha)
        )
        assert sorted(j.label for j in settled) == ["deliver", "skip"], settled
        (sent,) = [j for j in settled if j.decision.deliver]
        (held,) = [j for j in settled if not j.decision.deliver]
        assert "same content" in held.decision.reason
        sender = "a" if settled[0] is sent else "b"
        await alerting.delivered(a, CONFIG_ID, f"{sender}-{n}", sent, took=took, sha=sha)
        state = await alerts.state(b, CONFIG_ID)
        if took:
            assert (state.delivered_sha256, state.delivered_execution_id) == (sha, f"{sender}-{n}")
        else:  # its deliveries all failed: the file delivered before is the previous one again
            assert (state.delivered_sha256, state.delivered_execution_id) == (
                "new-0",
                judged[0].delivered_before[1],
            )
