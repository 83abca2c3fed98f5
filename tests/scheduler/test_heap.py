"""The loop's heap walk (timetable.due_timelines) against a plain scan of every timeline."""

from __future__ import annotations

import heapq
import itertools
import random
from typing import Any
from zoneinfo import ZoneInfo

from reporthubd.cron import FireTimes, parse_cron
from reporthubd.scheduler.timetable import HeapEntry, Timeline, due_timelines

FIRES = FireTimes(parse_cron("* * * * *"), ZoneInfo("UTC"))


def _scan(timelines: list[Timeline], due: int) -> set[int]:
    """What the walk must find: timelines with members whose current instant is `due`."""
    return {id(t) for t in timelines if t.next_ts == due and t.members}


def test_due_timelines_finds_exactly_the_live_entries_at_the_earliest_instant() -> None:
    rng = random.Random(7)
    seq = itertools.count()
    for _ in range(200):
        heap: list[HeapEntry] = []
        timelines: list[Timeline] = []
        for k in range(rng.randint(1, 300)):
            timeline = Timeline(("* * * * *", f"zone-{k}", None, None), FIRES, None)
            if rng.random() < 0.9:
                member: Any = object()
                timeline.members[k] = member
            # a few stale entries per timeline (earlier pushes), then its current one
            for _ in range(rng.randint(0, 2)):
                timeline.token += 1
                heapq.heappush(heap, (rng.randint(0, 5), next(seq), timeline.token, timeline))
            timeline.next_ts = rng.randint(0, 5)
            timeline.token += 1
            heapq.heappush(heap, (timeline.next_ts, next(seq), timeline.token, timeline))
            timelines.append(timeline)
        due = heap[0][0]
        found = due_timelines(heap, due)
        assert len(found) == len({id(t) for t in found})  # none twice
        assert {id(t) for t in found} == _scan(timelines, due)


def test_due_timelines_of_an_empty_heap_is_empty() -> None:
    assert due_timelines([], 0) == []
