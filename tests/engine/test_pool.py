"""The bounded pool: global and per-datasource limits, order, nothing dropped, counts."""

from __future__ import annotations

import asyncio
from typing import Any

from reporthubd.engine.pool import Pool


async def _job(
    pool: Pool, key: str, limit: int | None, seq: int, log: list[str], release: asyncio.Event
) -> None:
    async with pool.slot(key, limit, seq):
        log.append(f"{key}{seq}")
        await release.wait()


async def test_global_limit_order_and_counts() -> None:
    pool = Pool(2)
    log: list[str] = []
    gates = [asyncio.Event() for _ in range(5)]
    tasks = [asyncio.create_task(_job(pool, "a", None, seq, log, gates[seq])) for seq in range(5)]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert log == ["a0", "a1"]
    assert (pool.running, pool.queued) == (2, 3)
    assert pool.by_key() == {"a": {"running": 2, "queued": 3}}
    gates[1].set()
    await asyncio.sleep(0.01)
    assert log == ["a0", "a1", "a2"]  # first come, first served
    for gate in gates:
        gate.set()
    await asyncio.gather(*tasks)
    assert log == ["a0", "a1", "a2", "a3", "a4"]  # none dropped
    assert (pool.running, pool.queued) == (0, 0)


async def test_datasource_limit_does_not_block_others() -> None:
    pool = Pool(3)
    log: list[str] = []
    release = asyncio.Event()
    tasks = [
        asyncio.create_task(_job(pool, key, 1 if key == "slow" else None, seq, log, release))
        for seq, key in enumerate(["slow", "slow", "slow", "fast", "fast"])
    ]
    await asyncio.sleep(0.01)
    # "slow" runs one at a time; "fast" gets the free global slots in the meantime.
    assert log == ["slow0", "fast3", "fast4"]
    assert pool.by_key()["slow"] == {"running": 1, "queued": 2}
    release.set()
    await asyncio.gather(*tasks)
    assert log[3:] == ["slow1", "slow2"]


async def test_cancelled_waiter_leaves_the_queue() -> None:
    pool = Pool(1)
    log: list[str] = []
    release = asyncio.Event()
    first = asyncio.create_task(_job(pool, "a", None, 0, log, release))
    second = asyncio.create_task(_job(pool, "a", None, 1, log, release))
    third = asyncio.create_task(_job(pool, "a", None, 2, log, release))
    await asyncio.sleep(0.01)
    second.cancel()
    await asyncio.gather(second, return_exceptions=True)
    assert pool.queued == 1
    release.set()
    await asyncio.gather(first, third)
    assert log == ["a0", "a2"]
    assert (pool.running, pool.queued) == (0, 0)


async def test_resize_lets_waiters_in() -> None:
    pool = Pool(1)
    log: list[str] = []
    release = asyncio.Event()
    tasks = [asyncio.create_task(_job(pool, "a", None, s, log, release)) for s in range(3)]
    await asyncio.sleep(0.01)
    assert len(log) == 1
    pool.resize(3)
    await asyncio.sleep(0.01)
    assert len(log) == 3
    release.set()
    await asyncio.gather(*tasks)


async def _sheets(
    pool: Pool, keys: list[tuple[str, int | None]], seq: int, log: list[str], gates: Any
) -> None:
    """A run on keys[0] whose further sheets query keys[1:] (Slot.move before each)."""
    (first, first_limit), rest = keys[0], keys[1:]
    async with pool.slot(first, first_limit, seq) as slot:
        log.append(f"{seq}:{first}")
        await gates[seq].wait()
        for key, limit in rest:
            await slot.move(key, limit)
            log.append(f"{seq}:{key}")
            await gates[seq].wait()


async def test_a_sheet_on_another_datasource_waits_for_its_limit() -> None:
    pool = Pool(4)
    log: list[str] = []
    gates = [asyncio.Event() for _ in range(3)]
    # runs 0 and 1 on "a" with a sheet on "b" (limit 1); run 2 is a plain run on "b"
    tasks = [
        asyncio.create_task(_sheets(pool, [("a", None), ("b", 1)], 0, log, gates)),
        asyncio.create_task(_sheets(pool, [("a", None), ("b", 1)], 1, log, gates)),
        asyncio.create_task(_sheets(pool, [("b", 1)], 2, log, gates)),
    ]
    await asyncio.sleep(0.01)
    assert log == ["0:a", "1:a", "2:b"]
    gates[0].set()
    gates[1].set()
    await asyncio.sleep(0.01)
    # both sheets wait for "b", held by run 2; "a" has its room back at once
    assert pool.by_key() == {"b": {"running": 1, "queued": 2}}
    assert pool.running == 3
    gates[2].set()
    await asyncio.gather(*tasks)
    assert log[3:] == ["0:b", "1:b"]  # one at a time, in submission order
    assert (pool.running, pool.queued, pool.by_key()) == (0, 0, {})


async def test_two_runs_waiting_for_each_others_datasource_do_not_deadlock() -> None:
    pool = Pool(2)
    log: list[str] = []
    gates = [asyncio.Event() for _ in range(2)]
    tasks = [
        asyncio.create_task(_sheets(pool, [("a", 1), ("b", 1)], 0, log, gates)),
        asyncio.create_task(_sheets(pool, [("b", 1), ("a", 1)], 1, log, gates)),
    ]
    await asyncio.sleep(0.01)
    for gate in gates:
        gate.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert sorted(log) == ["0:a", "0:b", "1:a", "1:b"]
    assert (pool.running, pool.by_key()) == (0, {})


async def test_a_move_cancelled_while_waiting_gives_back_its_global_slot() -> None:
    pool = Pool(2)
    log: list[str] = []
    gates = [asyncio.Event(), asyncio.Event()]
    holder = asyncio.create_task(_sheets(pool, [("b", 1)], 0, log, gates))
    mover = asyncio.create_task(_sheets(pool, [("a", None), ("b", 1)], 1, log, gates))
    await asyncio.sleep(0.01)
    gates[1].set()
    await asyncio.sleep(0.01)
    assert pool.by_key() == {"b": {"running": 1, "queued": 1}}
    mover.cancel()
    await asyncio.gather(mover, return_exceptions=True)
    assert (pool.running, pool.by_key()) == (1, {"b": {"running": 1, "queued": 0}})
    gates[0].set()
    await holder
    assert (pool.running, pool.by_key()) == (0, {})
