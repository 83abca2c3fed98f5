"""Fan-out acceptance (issue 18), the kill, quick variant: two daemons over a MariaDB store, the
one running a data-driven run of 300 audiences killed with SIGKILL a third of the way through its
fan-out; the other recovers the parent (the same audiences), adopts the children queued on the
dead node and runs again, under the same Idempotency-Key, those it was delivering. The checks are
fanout_scenario.py's; test_fanout_10k_kill.py runs the issue's 10,000."""

from __future__ import annotations

from pathlib import Path

from reporthubd.store.database import Store
from tests.engine.conftest import Source
from tests.reliability.fanout_scenario import (
    Receiver,
    kill_one_of_two,
    receiver,
    source,
)

__all__ = ["receiver", "source"]  # fixtures

AUDIENCES = 300


async def test_fan_out_survives_a_sigkill_of_one_of_two_daemons(
    tmp_path: Path, mariadb_store: tuple[Store, str], source: Source, receiver: Receiver
) -> None:
    figures = await kill_one_of_two(tmp_path, mariadb_store, source, receiver, AUDIENCES)
    assert figures["killed_at"] < AUDIENCES
