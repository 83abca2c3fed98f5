"""Fan-out acceptance at the issue's scale (issue 18): one daemon over a MariaDB store sends a
data-driven report to 10,000 audiences of a MariaDB driver, each by webhook: exactly 10,000
deliveries, one per audience key, no duplicate by Idempotency-Key or by content, the parent's
counts, the dry run's list equal to what was sent; the daemon's store and source connections
stay within its pools and its RSS flat while it runs (fanout_scenario.py). Minutes: background."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reporthubd.store.database import Store
from tests.engine.conftest import Source
from tests.reliability.fanout_scenario import (
    Receiver,
    one_daemon,
    receiver,
    source,
)

__all__ = ["receiver", "source"]  # fixtures

AUDIENCES = 10_000

pytestmark = [pytest.mark.background, pytest.mark.timeout(1500)]


async def test_ten_thousand_audiences_with_one_daemon(
    tmp_path: Path, mariadb_store: tuple[Store, str], source: Source, receiver: Receiver
) -> None:
    figures = await one_daemon(tmp_path, mariadb_store, source, receiver, AUDIENCES)
    print(json.dumps(figures))
    assert figures["requests"] == AUDIENCES
