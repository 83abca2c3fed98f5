"""The console's server-sent events against a real daemon (tests/control/console_site.py): a
run's lifecycle events arrive as they happen (created, started, finished, in that order), each
followed by a snapshot of the live runs; a stream watching one run hears of that run only and
ends once it is terminal; an idle stream stays open with keep-alive comments. The per-stream
queue is bounded (control/live.py): a client that does not read gets one overflow mark, never
a growing backlog."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import aiohttp
import pytest

from reporthubd import domain
from reporthubd.control import live
from reporthubd.lifecycle.events import Events, LifecycleEvent
from tests.control import console_site
from tests.control.console_site import TOKEN, Site


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    running = console_site.start(tmp_path_factory.mktemp("events"))
    yield running
    running.stop()
    failed = [line for line in running.daemon.output().splitlines() if "handler failed" in line]
    assert failed == [], failed


async def _frames(answer: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, object]]:
    """(event name, data) of each frame; a comment frame is ("comment", its text)."""
    buffer = ""
    async for chunk in answer.content.iter_any():
        buffer += chunk.decode()
        while "\n\n" in buffer:
            frame, buffer = buffer.split("\n\n", 1)
            if frame.startswith(":"):
                yield "comment", frame[1:].strip()
                continue
            name, data = "message", ""
            for line in frame.split("\n"):
                if line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("data:"):
                    data += line[5:].strip()
            yield name, json.loads(data)


async def _execute(session: aiohttp.ClientSession, site: Site, top: int) -> str:
    async with session.post(
        f"{site.url}/api/execute/{site.config_id('counting')}",
        json={"parameters": {"top": top}, "deliver": False},
    ) as answer:
        assert answer.status == 202, await answer.text()
        return str((await answer.json())["data"]["execution_id"])


async def test_lifecycle_events_are_pushed_as_they_happen(site: Site) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}", "Accept": "text/event-stream"}
    timeout = aiohttp.ClientTimeout(total=90)
    async with (
        aiohttp.ClientSession(headers=headers, timeout=timeout) as session,
        session.get(f"{site.url}/api/console/events") as stream,
    ):
        assert stream.status == 200
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        frames = _frames(stream)
        name, first = await anext(frames)
        assert name == "runs" and first["runs"] == []  # type: ignore[index]

        execution_id = await _execute(session, site, 300_000)
        seen: list[tuple[str, str]] = []
        snapshots_after = 0
        async for name, data in frames:
            if name == "lifecycle":
                assert isinstance(data, dict)
                if data["execution_id"] == execution_id:
                    seen.append((data["transition"], data["new"]))
                    snapshots_after = 0
            elif name == "runs":
                snapshots_after += 1
            if seen and seen[-1][1] == "COMPLETED" and snapshots_after:
                break
        assert seen == [
            ("created", "PENDING"),
            ("started", "RUNNING"),
            ("finished", "COMPLETED"),
        ], seen
        assert data["runs"] == [] or all(  # type: ignore[index]
            run["execution_id"] != execution_id
            for run in data["runs"]  # type: ignore[index]
        )

        # Nothing runs now: the stream stays open, with keep-alive comments.
        name, data = await anext(frames)
        assert (name, data) == ("comment", "keep-alive"), (name, data)


async def test_a_watched_run_hears_of_itself_and_ends(site: Site) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(
        headers=headers, timeout=aiohttp.ClientTimeout(total=90)
    ) as session:
        watched = await _execute(session, site, 20_000_000)  # seconds: cancelled below
        names: list[str] = []
        transitions: list[str] = []
        async with session.get(
            f"{site.url}/api/console/events", params={"execution_id": watched}
        ) as stream:
            async for name, data in _frames(stream):
                names.append(name)
                if name == "runs" and names.count("runs") == 1:
                    assert isinstance(data, dict) and not data["watched"]["terminal"], data
                    other = await _execute(session, site, 1_000)  # not this stream's news
                    async with session.post(
                        f"{site.url}/api/execution/{watched}/cancel", json={"reason": "test"}
                    ) as answer:
                        assert answer.status == 200, await answer.text()
                if name == "lifecycle":
                    assert isinstance(data, dict)
                    assert data["execution_id"] == watched, (data, other)
                    transitions.append(f"{data['transition']} {data['new']}")
        assert names[-1] == "end" and names.count("runs") >= 2, names
        assert transitions[-1] == "cancelled CANCELLED", (names, transitions)


async def test_a_client_that_is_no_event_stream_gets_a_finite_answer(site: Site) -> None:
    """Without `Accept: text/event-stream` (a generated client) the answer ends once nothing
    runs (with nothing running: one snapshot and the end); without the token, a 401."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        async with session.get(
            f"{site.url}/api/console/events", headers={"Authorization": f"Bearer {TOKEN}"}
        ) as answer:
            frames = [(name, data) async for name, data in _frames(answer)]
        names = [name for name, _ in frames]
        # Finite: it ends once nothing runs (a run of an earlier test may still be ending),
        # never idles with keep-alives.
        assert names[0] == "runs" and names[-1] == "end" and "comment" not in names, names
        last_runs = [data for name, data in frames if name == "runs"][-1]
        assert last_runs["runs"] == [], last_runs  # type: ignore[index]
        async with session.get(f"{site.url}/api/console/events") as answer:
            assert answer.status == 401


def _event(n: int) -> LifecycleEvent:
    return LifecycleEvent(
        execution_id=f"run-{n}",
        config_id=1,
        schedule_id=None,
        transition=domain.Transition.CREATED,
        old=None,
        new=domain.ExecutionStatus.PENDING,
        reason=None,
        node_id="node",
        at=datetime.now(UTC),
    )


async def test_a_stream_that_is_not_read_holds_a_bounded_queue() -> None:
    events = Events()
    feed = live.LiveFeed(events, limit=10)
    with feed.subscribe() as slow, feed.subscribe() as quick:
        heard: list[str] = []
        for n in range(25):
            events.publish(_event(n))
            if n % 5 == 4:  # a client that reads keeps up: every event, in order
                batch = await quick.next(0)
                assert not batch.overflowed
                heard += [e.execution_id for e in batch.events]
            assert slow.queued <= 10
        assert heard == [f"run-{i}" for i in range(25)]
        batch = await slow.next(0)
        assert batch.overflowed and len(batch.events) <= 10, batch
        assert not (await slow.next(0)).overflowed  # the mark is cleared once read
        assert feed.streams == 2
        waiting = asyncio.create_task(quick.next(30), name="quick stream waits")
        await asyncio.sleep(0)
        feed.close()
        assert (await waiting).closed
        events.publish(_event(99))  # closed: no longer subscribed
        assert slow.queued == 0
    assert feed.streams == 0
