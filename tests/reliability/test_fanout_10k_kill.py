"""Fan-out acceptance at the issue's scale (issue 18), the kill: two daemons over a MariaDB
store; the one running a data-driven run of 10,000 audiences is killed with SIGKILL a third of
the way through its fan-out, the other recovers the parent and sends the rest. Either way:
exactly 10,000 accepted deliveries, one per audience key, no duplicate by content, the parent's
counts, the dry run's list equal to what was sent, connections and RSS bounded on both daemons
(fanout_scenario.py). Minutes: background."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reporthubd.store.database import Store
from tests.engine.conftest import Source
from tests.reliability.fanout_scenario import (
    Receiver,
    kill_one_of_two,
    receiver,
    source,
)

__all__ = ["receiver", "source"]  # fixtures

AUDIENCES = 10_000

pytestmark = [pytest.mark.background, pytest.mark.timeout(1500)]


async def test_ten_thousand_audiences_survive_a_sigkill_of_one_of_two_daemons(
    tmp_path: Path, mariadb_store: tuple[Store, str], source: Source, receiver: Receiver
) -> None:
    figures = await kill_one_of_two(tmp_path, mariadb_store, source, receiver, AUDIENCES)
    print(json.dumps(figures))
    assert figures["killed_at"] < AUDIENCES
