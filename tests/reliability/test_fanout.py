"""Fan-out acceptance (issue 18), the quick variant: one daemon over a MariaDB store sends a
data-driven report to 300 audiences of a MariaDB driver, each by webhook (fanout_scenario.py has
the checks; test_fanout_10k.py runs the issue's 10,000)."""

from __future__ import annotations

from pathlib import Path

from reporthubd.store.database import Store
from tests.engine.conftest import Source
from tests.reliability.fanout_scenario import (
    Receiver,
    one_daemon,
    receiver,
    source,
)

__all__ = ["receiver", "source"]  # fixtures

AUDIENCES = 300


async def test_fan_out_with_one_daemon(
    tmp_path: Path, mariadb_store: tuple[Store, str], source: Source, receiver: Receiver
) -> None:
    figures = await one_daemon(tmp_path, mariadb_store, source, receiver, AUDIENCES)
    assert figures["requests"] == AUDIENCES
