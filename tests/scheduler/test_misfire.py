"""Misfire decisions: a pure function of the due fires, `now` and the policy; the cap on the
SKIPPED rows one schedule writes after a long outage."""

from __future__ import annotations

import pytest

from reporthubd.domain import MisfirePolicy
from reporthubd.scheduler.misfire import ON_TIME_SECONDS, SkippedRecords, decide

NOW = 10_000.0
WHY = "missed: daemon down from A to B"


def run(policy: MisfirePolicy, fires: list[int], grace: float = 300, limit: int = 100):
    return decide(
        fires, now=NOW, policy=policy, grace_seconds=grace, run_all_limit=limit,
        missed_because=WHY,
    )  # fmt: skip


def test_on_time_fires_run_whatever_the_policy() -> None:
    fires = [int(NOW - ON_TIME_SECONDS), int(NOW - 1)]
    for policy in MisfirePolicy:
        decision = run(policy, fires)
        assert decision.run == fires and decision.skipped == []


def test_run_once_runs_the_most_recent_missed_fire_and_records_the_others() -> None:
    decision = run(MisfirePolicy.RUN_ONCE, [9_700, 9_760, 9_820])
    assert decision.run == [9_820]
    assert [fire for fire, _ in decision.skipped] == [9_700, 9_760]
    assert all(why.startswith(WHY) and "coalesced" in why for _, why in decision.skipped)


def test_run_once_with_an_on_time_fire_runs_only_that_one() -> None:
    decision = run(MisfirePolicy.RUN_ONCE, [9_820, 9_999])
    assert decision.run == [9_999]
    assert [fire for fire, _ in decision.skipped] == [9_820]


def test_run_once_beyond_the_grace_runs_nothing() -> None:
    decision = run(MisfirePolicy.RUN_ONCE, [9_000, 9_500], grace=100)
    assert decision.run == []
    assert all("beyond the misfire grace of 100 s" in why for _, why in decision.skipped)


def test_skip_records_every_missed_fire() -> None:
    decision = run(MisfirePolicy.SKIP, [9_700, 9_760])
    assert decision.run == []
    assert [(f, "(misfire_policy skip)" in why) for f, why in decision.skipped] == [
        (9_700, True),
        (9_760, True),
    ]


def test_run_all_runs_each_missed_fire_oldest_first_up_to_the_limit() -> None:
    fires = list(range(9_720, 9_990, 40))  # 7 fires, all within the grace
    decision = run(MisfirePolicy.RUN_ALL, fires, limit=3)
    assert decision.run == fires[-3:]
    assert [fire for fire, _ in decision.skipped] == fires[:-3]
    assert all("run_all_limit=3" in why for _, why in decision.skipped)


def test_skipped_records_keep_the_most_recent_and_summarise_the_older_rest() -> None:
    records = SkippedRecords(3, missed_because=WHY)
    for fire in range(0, 600, 60):  # ten missed fires, a minute apart
        records.add(fire, f"reason {fire}")
    out = records.records()
    assert out[1:] == [(420, "reason 420"), (480, "reason 480"), (540, "reason 540")]
    assert out[0] == (
        0,
        f"{WHY}; 7 fires from 1970-01-01T00:00:00Z to 1970-01-01T00:06:00Z not recorded one by "
        "one (more than scheduler.skipped_rows_limit=3 missed)",
    )
    assert len(records) == 4


def test_skipped_records_within_the_limit_are_all_listed_and_copies_are_independent() -> None:
    records = SkippedRecords(3, missed_because=WHY)
    records.add(60, "a")
    records.add(120, "b")
    before = records.copy()
    records.add(180, "c")
    records.add(240, "d")
    assert before.records() == [(60, "a"), (120, "b")]
    assert records.records()[0][0] == 60 and "1 fires from" in records.records()[0][1]
    assert [fire for fire, _ in records.records()] == [60, 120, 180, 240]
    with pytest.raises(ValueError):
        SkippedRecords(0, missed_because=WHY)
