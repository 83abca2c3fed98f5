"""Fan-out acceptance (issue 18), the kill: two daemons over a MariaDB store, one of them killed
with SIGKILL in the middle of a data-driven run's fan-out; the other recovers the parent (the
same audiences), adopts the children queued on the dead node and runs again, under the same
Idempotency-Key, those it was delivering. The checks are test_fanout.py's: one key per audience
and every key once, no two audiences share a file, each file holds its audience's rows, the
parent's counts, the dry run's list equals what was sent; and the repeats under the same key are
at most the dead node's pool."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from reporthubd.store.database import Store
from tests.engine.conftest import Source
from tests.reliability.conftest import TERMINAL
from tests.reliability.test_fanout import (
    AUDIENCES,
    Receiver,
    _check_sent,
    _counts,
    _daemon,
    _definitions,
    _dry_run,
    _parent_chain,
    _until,
    mariadb_store,
    receiver,
    source,
)

pytestmark = pytest.mark.background
__all__ = ["mariadb_store", "receiver", "source"]  # fixtures


async def test_fan_out_survives_a_sigkill_of_one_of_two_daemons(
    tmp_path: Path, mariadb_store: tuple[Store, str], source: Source, receiver: Receiver
) -> None:
    store, url = mariadb_store
    config = await _definitions(store, source, receiver)
    a = _daemon(tmp_path, url, "fan-a")
    b = _daemon(tmp_path, url, "fan-b")
    try:
        await asyncio.gather(a.ready(), b.ready())
        listing = await _dry_run(b, config)
        parent = await a.execute(config)

        async def a_third_sent() -> bool:
            return len(receiver.hits) >= AUDIENCES // 3

        await _until(a_third_sent, "a third of the deliveries")
        a.process.signal(signal.SIGKILL)
        killed_at = len(receiver.hits)
        assert killed_at < AUDIENCES  # the kill came mid-fan-out

        async def parent_ended() -> bool:
            chain = await _parent_chain(store, parent)
            return len(chain) > 1 and chain[-1].status in TERMINAL

        await _until(parent_ended, "the recovered parent to end")
        chain = await _parent_chain(store, parent)
        counts = await _counts(b, chain[-1].id)
    finally:
        await asyncio.gather(a.close(), b.close())
    assert [r.status for r in chain] == ["FAILED", "COMPLETED"]  # lost, then recovered by b
    assert chain[-1].node_id == "fan-b" and chain[-1].row_count == AUDIENCES
    assert counts == {
        "audiences": AUDIENCES,
        "delivered": AUDIENCES,
        "failed": 0,
        "skipped": 0,
        "unfinished": 0,
    }
    sent = _check_sent(receiver, listing)
    # A repeat is a delivery in flight at the kill, sent again under its own key: at most one
    # per run a's pool held.
    assert sent["repeats_under_the_same_key"] <= 12, sent
