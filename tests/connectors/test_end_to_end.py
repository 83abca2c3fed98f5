"""A report on every contract source runs through the engine into a CSV file (the issue's
acceptance), with a bound parameter; the connector's `test()` is what test-datasource calls."""

from __future__ import annotations

import csv
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from reporthubd.domain import ExecutionStatus
from reporthubd.engine import Engine
from reporthubd.store import migrate
from reporthubd.store.database import Store
from tests.connectors.sources import CANON, Source
from tests.engine.conftest import (
    RecordingRunner,
    add_config,
    add_datasource,
    engine_settings,
    run_to_end,
)

ROWS = 1500


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    settings = engine_settings(tmp_path)
    store = Store(settings.store)
    await store.start()
    await migrate.upgrade(store)
    eng = Engine(settings, store, node_id="connectors-e2e", deliveries=RecordingRunner())
    await eng.start()
    yield eng
    await eng.stop()
    await store.stop()


async def test_report_into_csv(source: Source, engine: Engine):
    if source.no_server:
        pytest.skip(source.no_server.reason)
    assert source.rows_sql is not None
    datasource = await add_datasource(engine.store, source.type.value, source.config)
    config = await add_config(engine.store, datasource, source.rows_sql(ROWS))
    execution = await run_to_end(engine, config)
    assert execution.status is ExecutionStatus.COMPLETED, execution.error_message
    assert execution.row_count == ROWS
    with Path(execution.file_path).open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert [name.lower() for name in rows[0]] == ["n", "s"]
    assert len(rows) == ROWS + 1
    assert sorted(int(row[0]) for row in rows[1:]) == list(range(1, ROWS + 1))


async def test_parameterised_report_into_csv(source: Source, engine: Engine):
    if source.no_server:
        pytest.skip(source.no_server.reason)
    assert source.param_sql is not None
    sql = source.param_sql("txt")
    if not isinstance(sql, str):
        pytest.skip(sql.reason)
    datasource = await add_datasource(engine.store, source.type.value, source.config)
    value = CANON["txt"]
    config = await add_config(engine.store, datasource, sql, parameters={"val": value})
    execution = await run_to_end(engine, config)
    assert execution.status is ExecutionStatus.COMPLETED, execution.error_message
    with Path(execution.file_path).open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[1:] == [[value]], json.dumps(rows, ensure_ascii=False)
