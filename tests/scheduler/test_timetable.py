"""The timetable without a store or a clock: reload diffing, shared timelines, the heap."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from reporthubd import domain
from reporthubd.scheduler.timetable import Timetable

NOW = datetime(2026, 5, 4, 10, 0, 30, tzinfo=UTC).timestamp()


def schedule(schedule_id: int, cron: str = "* * * * *", **values: Any) -> domain.Schedule:
    fields: dict[str, Any] = {
        "id": schedule_id,
        "config_id": 1,
        "cron_expression": cron,
        "timezone": ZoneInfo("UTC"),
        "timezone_name": None,
        "parameters": {},
        "misfire_policy": domain.MisfirePolicy.RUN_ONCE,
        "misfire_grace_seconds": None,
        "start_at": None,
        "end_at": None,
    } | values
    return domain.Schedule(**fields)


def test_schedules_with_one_expression_share_a_timeline_and_fire_together() -> None:
    table = Timetable()
    changes = table.apply([schedule(1), schedule(2), schedule(3, "0 9 * * *")], {}, NOW)
    assert (changes.added, changes.changed, changes.removed, changes.disabled) == (3, 0, 0, 0)
    assert len(table.timelines) == 2
    minute = int(datetime(2026, 5, 4, 10, 1, tzinfo=UTC).timestamp())
    assert table.peek() == minute
    assert table.fires_at(minute) == 2
    assert table.next_fire() == (datetime(2026, 5, 4, 10, 1, tzinfo=UTC), 2)
    [due] = table.pop_due(minute)
    assert set(due.members) == {1, 2}
    due.next_ts = due.fires.next_ts(minute)
    table.push(due)
    assert table.peek() == minute + 60


def test_a_reload_keeps_unchanged_schedules_moves_changed_ones_and_drops_removed_ones() -> None:
    table = Timetable()
    table.apply([schedule(1), schedule(2), schedule(3)], {}, NOW)
    kept = table.jobs[1]
    generation = table.generation
    later = replace(schedule(1), last_run_at=datetime(2026, 5, 4, 10, 0, tzinfo=UTC))
    changes = table.apply([later, schedule(2, "*/5 * * * *"), schedule(4)], {3: "bad row"}, NOW)
    assert (changes.added, changes.changed, changes.removed, changes.disabled) == (1, 1, 1, 1)
    assert table.jobs[1] is kept  # only a column reporthubd writes changed
    assert set(table.jobs) == {1, 2, 4}
    assert table.disabled == {3: "bad row"}
    assert table.generation == generation + 1
    assert table.jobs[2].timeline is not kept.timeline


def test_an_expression_that_never_fires_is_disabled_with_a_reason() -> None:
    table = Timetable()
    changes = table.apply([schedule(1, "0 0 31 2 *")], {}, NOW)
    assert changes.disabled == 1 and not table.jobs
    assert "never fires" in table.disabled[1]
    assert table.peek() is None and table.next_fire() is None
