"""The bounded pool: global and per-datasource limits, order, nothing dropped, counts."""

from __future__ import annotations

import asyncio

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
