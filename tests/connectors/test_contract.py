"""The connector contract: the same cases against every data source (see sources.py, builders.py).

No case asserts speed. Waiting is bounded (a connect timeout, a cancel grace) only so that a hang
fails instead of stalling the suite.
"""

from __future__ import annotations

import asyncio
import gc
import math
import tracemalloc
from datetime import datetime
from typing import Any

import psutil
import pytest

from reporthubd.connectors import base, params
from reporthubd.connectors.base import ColumnKind, ConnectorError, QueryRequest
from tests.connectors import sources
from tests.connectors.fallback_servers import closed_port
from tests.connectors.sources import CANON, KINDS, Limit, Source

MiB = 1024 * 1024
BATCH = 5000


def limited(value: object) -> None:
    if isinstance(value, Limit):
        pytest.skip(value.reason)


def known_bug(request: pytest.FixtureRequest, source: Source, case: str) -> None:
    reason = source.known_bugs.get(case)
    if reason:
        request.applymarker(pytest.mark.xfail(reason=reason, strict=False))


async def fetch_all(
    connector: base.Connector, request: QueryRequest
) -> tuple[list[Any], list[Any]]:
    async with connector.stream(request) as result:
        columns = list(result.columns)
        rows = [row async for batch in result.batches() for row in batch]
    return columns, rows


def same(actual: Any, expected: Any) -> bool:
    if isinstance(expected, float) and isinstance(actual, float):
        return math.isclose(actual, expected, rel_tol=1e-9)
    if isinstance(expected, datetime) and isinstance(actual, datetime):
        if (expected.tzinfo is None) != (actual.tzinfo is None):
            return False
        return actual == expected
    if isinstance(expected, bytes):
        return isinstance(actual, bytes | bytearray | memoryview) and bytes(actual) == expected
    if isinstance(expected, bool) or isinstance(actual, bool):
        return type(actual) is type(expected) and actual == expected
    return type(actual) is type(expected) and actual == expected  # Decimal stays Decimal


# --- open / test ---------------------------------------------------------------------------


async def test_test_reports_version_and_round_trip(source: Source, connector: base.Connector):
    result = await connector.test()
    assert result.ok
    assert result.round_trip_ms >= 0
    limited(source.server_version)
    assert result.server_version


# --- the type matrix -----------------------------------------------------------------------


@pytest.mark.parametrize("name", sources.TYPE_NAMES)
async def test_type_matrix(
    source: Source, connector: base.Connector, name: str, request: pytest.FixtureRequest
):
    known_bug(request, source, f"type_matrix:{name}")
    limited(source.type_matrix)
    assert isinstance(source.type_matrix, str)
    override = source.type_overrides.get(name)
    limited(override)
    kind, expected = override if isinstance(override, tuple) else (KINDS[name], CANON[name])
    columns, rows = await fetch_all(connector, QueryRequest(sql=source.type_matrix))
    assert len(rows) == 1
    index = {column.name.lower(): i for i, column in enumerate(columns)}
    assert name in index, f"no column {name} in {[c.name for c in columns]}"
    column = columns[index[name]]
    value = rows[0][index[name]]
    if kind is not None:
        assert column.kind is kind, f"{name}: {column.kind} ({column.source_type})"
    assert same(value, expected), f"{name}: {value!r} != {expected!r}"
    if kind is ColumnKind.DECIMAL and name == "dec":
        assert column.scale in (None, 10)


# --- typed parameters ----------------------------------------------------------------------


@pytest.mark.parametrize("name", sources.PARAM_KINDS)
async def test_parameter_types(
    source: Source, connector: base.Connector, name: str, request: pytest.FixtureRequest
):
    known_bug(request, source, f"params:{name}")
    assert source.param_sql is not None
    sql = source.param_sql(name)
    limited(sql)
    assert isinstance(sql, str)
    override = source.param_overrides.get(name)
    limited(override)
    kind, expected = override if isinstance(override, tuple) else (KINDS[name], CANON[name])
    columns, rows = await fetch_all(
        connector, QueryRequest(sql=sql, parameters={"val": CANON[name]})
    )
    assert len(rows) == 1, rows
    assert same(rows[0][0], expected), f"{name}: {rows[0][0]!r} != {expected!r}"
    if kind is not None and name != "nul":
        assert columns[0].kind is kind, f"{name}: {columns[0].kind} ({columns[0].source_type})"


async def test_missing_parameter_is_named(source: Source, connector: base.Connector):
    assert source.param_sql is not None
    sql = source.param_sql("i")
    limited(sql)
    with pytest.raises((ConnectorError, params.ParameterError), match="val"):
        await fetch_all(connector, QueryRequest(sql=str(sql), parameters={}))


# --- streaming -----------------------------------------------------------------------------


async def test_stream_200k_rows_bounded_memory(source: Source, connector: base.Connector):
    assert source.rows_sql is not None
    sql = source.rows_sql(sources.ROWS)
    # Warm up: drivers load libraries and caches on the first query.
    await fetch_all(connector, QueryRequest(sql=source.rows_sql(10), batch_size=BATCH))
    gc.collect()
    process = psutil.Process()
    rss_before = process.memory_info().rss
    rss_peak = rss_before
    count = 0
    largest = 0
    last: Any = None
    tracemalloc.start()
    try:
        async with connector.stream(QueryRequest(sql=sql, batch_size=BATCH)) as result:
            async for batch in result.batches():
                count += len(batch)
                largest = max(largest, len(batch))
                last = batch[-1]
                rss_peak = max(rss_peak, process.memory_info().rss)
                del batch
        _, traced_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == sources.ROWS
    assert 0 < largest <= BATCH
    assert tuple(last) == sources.rows_expected(sources.ROWS) or count == sources.ROWS
    limited(source.memory)
    # The whole result is ~60 MB of text (~80 MB as Python objects): a connector that holds
    # it cannot stay under these generous bounds; one batch of 5,000 rows is ~1.6 MB.
    assert traced_peak < 24 * MiB, f"Python allocations peaked at {traced_peak / MiB:.1f} MiB"
    assert rss_peak - rss_before < 48 * MiB, f"RSS grew {(rss_peak - rss_before) / MiB:.1f} MiB"


async def test_early_exit_leaves_connector_usable(
    source: Source, connector: base.Connector, request: pytest.FixtureRequest
):
    known_bug(request, source, "early_exit")
    assert source.rows_sql is not None
    sql = source.rows_sql(sources.EARLY_ROWS)
    async with connector.stream(QueryRequest(sql=sql, batch_size=1000)) as result:
        async for batch in result.batches():
            assert batch
            break
    limited(source.type_matrix)
    _, rows = await fetch_all(connector, QueryRequest(sql=str(source.type_matrix)))
    assert len(rows) == 1


async def test_cancel_mid_stream_unwinds(source: Source, connector: base.Connector):
    """The engine's cancel (a timeout or a user) lands while the consumer holds a batch: the
    stream must unwind promptly (stopping the work on the server). Afterwards the connector
    either still works or says cleanly that it dropped its connection."""
    assert source.rows_sql is not None
    sql = source.rows_sql(sources.EARLY_ROWS)
    batches = 0
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(None) as deadline:
            async with connector.stream(QueryRequest(sql=sql, batch_size=500)) as result:
                async for _ in result.batches():
                    batches += 1
                    deadline.reschedule(asyncio.get_running_loop().time() + 0.1)
                    await asyncio.sleep(30)
    assert batches == 1
    limited(source.type_matrix)
    try:
        _, rows = await fetch_all(connector, QueryRequest(sql=str(source.type_matrix)))
    except ConnectorError:
        return  # dropped the connection after the cancel: allowed, and said cleanly
    assert len(rows) == 1


# --- faults --------------------------------------------------------------------------------


async def test_timeout_cancels_server_work(source: Source, connector: base.Connector):
    limited(source.slow_sql)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(1.5):
            async with connector.stream(
                QueryRequest(sql=str(source.slow_sql), timeout_seconds=60)
            ) as result:
                async for _ in result.batches():
                    pass
    limited(source.server_stop_limit)
    assert source.server_stopped is not None
    stopped = await asyncio.to_thread(sources.wait_until, source.server_stopped)
    assert stopped, "the slow statement still runs on the server after the timeout"


async def test_syntax_error_is_clean(source: Source, connector: base.Connector):
    with pytest.raises(ConnectorError) as caught:
        await fetch_all(connector, QueryRequest(sql=source.syntax_error))
    message = str(caught.value)
    assert source.where in message
    assert "Traceback" not in message


async def test_wrong_password(source: Source):
    limited(source.no_server)
    limited(source.wrong_password)
    assert isinstance(source.wrong_password, dict)
    conn = base.create(source.datasource(source.wrong_password))
    with pytest.raises(ConnectorError) as caught:
        async with asyncio.timeout(60):
            await conn.open()
    await conn.close()
    sources.collect_pymongo_leaks()
    assert sources.SECRET_PASSWORD not in str(caught.value)
    assert source.where in str(caught.value) or "127.0.0.1" in str(caught.value)


@pytest.mark.parametrize("fault", ["closed-port", "silent-listener"])
async def test_unreachable_host_fails_within_connect_timeout(
    source: Source, fault: str, request: pytest.FixtureRequest
):
    limited(source.unreachable)
    assert callable(source.unreachable)
    port = closed_port() if fault == "closed-port" else request.getfixturevalue("silent_port")
    config = source.unreachable(port)
    connect_timeout = float(config.get("options", {}).get("connect_timeout_seconds", 1))
    conn = base.create(source.datasource(config))
    with pytest.raises(ConnectorError) as caught:
        # "Fails in under the connect timeout": past it (plus slack for a loaded machine) this
        # raises TimeoutError instead of the connector's own error.
        async with asyncio.timeout(connect_timeout + 3):
            await conn.open()
    await conn.close()
    sources.collect_pymongo_leaks()
    message = str(caught.value)
    assert "127.0.0.1" in message or str(port) in message
    assert sources.SECRET_PASSWORD not in message


async def test_write_statement_refused(source: Source, connector: base.Connector):
    limited(source.write_sql)
    with pytest.raises(ConnectorError):
        await fetch_all(connector, QueryRequest(sql=str(source.write_sql)))
    assert source.write_absent is not None
    assert await asyncio.to_thread(source.write_absent)
