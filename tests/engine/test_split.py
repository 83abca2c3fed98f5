"""Split by key through the engine and the real delivery ledger (SQLite store, a SQLite data
source, a local webhook receiver): the report's query runs once, each audience's child gets the
rows of its key (the same bytes as a query filtered to that key), an audience without rows is
skipped as empty, rows whose key has no audience are named on the parent."""

from __future__ import annotations

import csv
import io
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from reporthubd.connectors import base as connectors
from reporthubd.engine import Engine, spill, splitting, streaming
from reporthubd.engine.ledger import DeliveryLedger
from reporthubd.formats import base as formats
from reporthubd.store import audiences as audience_rows
from reporthubd.store import schema
from reporthubd.store.database import Store
from tests.deliverers.peers import WebhookReceiver
from tests.engine.conftest import add_config, add_datasource, engine_settings, run_to_end
from tests.engine.test_audiences import add_driver, add_webhook

BRANCHES = 30


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    hook = WebhookReceiver()
    await hook.start()
    yield hook
    await hook.stop()


@pytest.fixture
async def engine(tmp_path: Path, engine_store: Store) -> AsyncIterator[Engine]:
    settings = engine_settings(tmp_path, max_concurrent_executions=4, batch_size=7)
    ledger = DeliveryLedger(settings, engine_store, node_id="test-node")
    eng = Engine(settings, engine_store, node_id="test-node", deliveries=ledger)
    await eng.start()
    yield eng
    await eng.stop()


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """Branches B000..B029 (every fifth without sales), sales in a scrambled order, plus sales
    of two branches nobody receives (X1, X2) and three with no branch."""
    path = tmp_path / "data.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE branches (code TEXT, manager TEXT)")
        conn.execute("CREATE TABLE sales (id INTEGER, branch TEXT, amount NUMERIC, note TEXT)")
        conn.executemany(
            "INSERT INTO branches VALUES (?, ?)",
            [(f"B{i:03d}", f"m{i}@example.com") for i in range(BRANCHES)],
        )
        sales: list[tuple[Any, ...]] = []
        for n in range(600):
            i = (n * 7) % BRANCHES
            if i % 5 == 0:
                continue
            sales.append((n, f"B{i:03d}", n * 1.25, f'note "{n}", ok' if n % 3 else None))
        sales += [(1000, "X1", 1, None), (1001, "X2", 2, None), (1002, "X1", 3, None)]
        sales += [(1003, None, 4, None), (1004, "  ", 5, None), (1005, None, 6, None)]
        conn.executemany("INSERT INTO sales VALUES (?, ?, ?, ?)", sales)
    conn.close()
    return path


async def _filtered(data: Path, branch: str, tmp_path: Path, query: str) -> bytes:
    """The CSV export of the report's query filtered to one branch, through the same writer."""
    source = await _datasource(data)
    connector = connectors.connector_class("sqlite")(source)
    writer_cls = formats.writer_class("csv")
    writer = writer_cls({}, formats.RenderContext(report_name="r", execution_id="x"))
    path = tmp_path / f"filtered-{branch}.csv"
    request = connectors.QueryRequest(
        sql=f"SELECT * FROM ({query}) AS s WHERE branch = :b", parameters={"b": branch}
    )
    try:
        await streaming.write_result(
            connector,
            writer,
            path,
            request,
            max_rows=None,
            truncate=False,
            progress=streaming.Progress(execution_id="x"),
        )
    finally:
        await connector.close()
    return path.read_bytes()


async def _datasource(data: Path) -> Any:
    from reporthubd import domain

    return domain.Datasource(
        id=1, name="s", type=domain.DatasourceType.SQLITE, connection_config={"path": str(data)}
    )


QUERY = "SELECT id, branch, amount, note FROM sales ORDER BY amount DESC"


async def test_each_branch_gets_its_rows_from_one_query(
    engine: Engine, engine_store: Store, data: Path, receiver: WebhookReceiver, tmp_path: Path
) -> None:
    ds = await add_datasource(engine_store, "sqlite", {"path": str(data)})
    config = await add_config(
        engine_store,
        ds,
        QUERY,
        name="Branch statement",
        format_options={"split_by": "branch"},
    )
    await add_driver(
        engine_store,
        config,
        ds,
        "SELECT code AS branch, manager AS recipients, 'st_' || code AS file_name FROM branches",
        key_column="branch",
    )
    await add_webhook(engine_store, config, receiver.url)

    parent = await run_to_end(engine, config)

    empty = [f"B{i:03d}" for i in range(BRANCHES) if i % 5 == 0]
    assert parent.status.value == "COMPLETED", parent.error_message
    assert parent.error_message == (
        f"split by 'branch': 486 rows, {BRANCHES - len(empty)} files; {len(empty)} audiences "
        f"without rows, skipped as empty: {', '.join(repr(k) for k in empty)}; 2 keys of the "
        "result have no audience (3 rows sent to nobody): 'X1', 'X2'; 3 rows with an empty "
        "'branch' sent to nobody"
    )
    burst = await audience_rows.get_burst(engine_store, parent.id)
    assert burst is not None
    assert (burst.audiences, burst.delivered, burst.failed, burst.skipped) == (
        BRANCHES,
        BRANCHES - len(empty),
        0,
        len(empty),
    )
    assert len(receiver.hits) == BRANCHES - len(empty)
    for hit in receiver.hits:
        metadata, body = hit.multipart_file()
        branch = metadata["file"]["name"].removeprefix("st_").removesuffix(".csv")
        assert body == await _filtered(data, branch, tmp_path, QUERY), branch
        table = list(csv.reader(io.StringIO(body.decode())))
        assert table[0] == ["id", "branch", "amount", "note"]
        assert {row[1] for row in table[1:]} == {branch}
    # The empty ones: completed without a file, their delivery recorded SKIPPED.
    e, a, d = schema.executions, schema.audiences, schema.delivery_logs
    async with engine_store.engine.connect() as conn:
        skipped = (
            await conn.execute(
                sa.select(a.c.audience_key, e.c.status, e.c.file_name, d.c.error_message)
                .join(e, e.c.id == a.c.child_id)
                .join(d, d.c.execution_id == e.c.id)
                .where(a.c.burst_id == parent.id, d.c.status == "SKIPPED")
            )
        ).all()
    assert sorted(r[0] for r in skipped) == empty
    assert {(r[1], r[2]) for r in skipped} == {("COMPLETED", None)}
    assert {r[3] for r in skipped} == {
        f"no rows for audience {key!r}: the report's result has no row with branch = {key!r} "
        "(split by key)"
        for key in empty
    }
    # The spill is gone once every child ended.
    assert not splitting.directory_of(engine.settings.execution.workspace, parent.id).exists()


async def test_a_child_without_the_spill_filters_the_query(
    engine: Engine, engine_store: Store, data: Path, tmp_path: Path
) -> None:
    """A child run where the spill is not (recovered on another node) runs the query and keeps
    its key's rows: the same file."""
    from reporthubd import domain
    from reporthubd.store import executions

    ds = await add_datasource(engine_store, "sqlite", {"path": str(data)})
    config_id = await add_config(engine_store, ds, QUERY, format_options={"split_by": "branch"})
    definitions = await executions.load_run_definitions(
        engine_store, config_id, None, default_timezone="UTC"
    )
    audience = audience_rows.Audience(burst_id="nowhere", key="B003", seq=0)
    child = splitting.for_child(definitions, audience)
    assert child.split is not None and "split_by" not in child.config.format_options
    assert child.config.empty_result_policy is domain.EmptyResultPolicy.SKIP
    connector = splitting.rows_for(
        connectors.connector_class("sqlite")(definitions.datasource), child, tmp_path / "ws"
    )
    writer = formats.writer_class("csv")(
        {}, formats.RenderContext(report_name="r", execution_id="x")
    )
    try:
        await streaming.write_result(
            connector,
            writer,
            tmp_path / "child.csv",
            connectors.QueryRequest(sql=QUERY, batch_size=5),
            max_rows=None,
            truncate=False,
            progress=streaming.Progress(execution_id="x"),
        )
    finally:
        await connector.close()
    assert (tmp_path / "child.csv").read_bytes() == await _filtered(data, "B003", tmp_path, QUERY)


@pytest.mark.parametrize(
    ("options", "driver_key", "expected"),
    [
        ({"split_by": "town"}, "branch", "'split_by': the result has no column 'town'"),
        ({"split_by": "branch"}, None, "format option 'split_by' needs the report's audience"),
        ({"split_by": 3}, "branch", "format option 'split_by' must be the name of a column"),
    ],
)
async def test_a_bad_split_sends_nothing(
    engine: Engine,
    engine_store: Store,
    data: Path,
    receiver: WebhookReceiver,
    options: dict[str, Any],
    driver_key: str | None,
    expected: str,
) -> None:
    ds = await add_datasource(engine_store, "sqlite", {"path": str(data)})
    config = await add_config(engine_store, ds, QUERY, format_options=options)
    await add_driver(
        engine_store,
        config,
        ds,
        "SELECT code AS branch, manager AS recipients FROM branches"
        if driver_key
        else "SELECT manager AS recipients FROM branches",
        key_column=driver_key,
    )
    await add_webhook(engine_store, config, receiver.url)
    parent = await run_to_end(engine, config)
    assert parent.status.value == "FAILED"
    assert expected in (parent.error_message or ""), parent.error_message
    assert receiver.hits == []


def test_the_spill_keeps_open_files_bounded_and_rows_in_order(tmp_path: Path) -> None:
    """Unordered keys: at most max_open files open, each key's rows back in arrival order."""
    keys = [f"k{i}" for i in range(50)]
    rows = [(n, keys[(n * 13) % 50], f"v{n}") for n in range(5000)]
    spilled = spill.KeySpill(tmp_path, key_index=1, max_open=4, buffer_bytes=2000)
    for start in range(0, len(rows), 300):
        spilled.add(rows[start : start + 300])
    columns = (connectors.Column(name="n", kind=connectors.ColumnKind.INTEGER, source_type="i"),)
    manifest = spilled.finish(columns)
    assert manifest.max_open == 4
    assert spill.read_manifest(tmp_path) == manifest
    for key in keys:
        reader = spill.KeyRows(tmp_path, key, batch_size=33)
        got: list[Any] = []
        while (batch := reader.next_batch()) is not None:
            assert len(batch) <= 33
            got += batch
        reader.close()
        assert got == [r for r in rows if r[1] == key]
        assert manifest.rows[key] == len(got)
    empty = spill.KeyRows(tmp_path, "nobody", batch_size=10)
    assert empty.next_batch() is None
    empty.close()


def test_rendered_records_are_cut_at_line_breaks_outside_quotes(tmp_path: Path) -> None:
    """CSV records as a database renders them, in chunks that end anywhere between lines: a
    quoted field may hold the delimiter, doubled quotes and line breaks; the key is the text."""
    spec = connectors.ServerCSV(
        delimiter=",",
        quote_char='"',
        quote_all=False,
        null_text="",
        true_text="true",
        false_text="false",
        line_ending="\n",
    )
    records = [
        b"1,A,plain\n",
        b'2,"B",quoted key\n',
        b'3,A,"two\nlines, and ""quotes"""\n',
        b"4,,null key\n",
        b'5,C,"x\n\ny"\n',
        b"6, A ,spaces trimmed\n",
    ]
    data = b"".join(records)
    spilled = spill.KeySpill(tmp_path, key_index=1, csv=spec, max_open=2, buffer_bytes=10)
    lines = data.split(b"\n")[:-1]
    # Whole lines, but chunks that split records (the COPY case).
    for start in range(0, len(lines), 2):
        spilled.add_rendered(b"".join(line + b"\n" for line in lines[start : start + 2]))
    columns = (connectors.Column(name="n", kind=connectors.ColumnKind.INTEGER, source_type="i"),)
    manifest = spilled.finish(columns)
    assert manifest.rows == {"A": 3, "B": 1, "C": 1} and manifest.null_rows == 1
    assert manifest.header.csv == spec
    expected = {
        "A": records[0] + records[2] + records[5],
        "B": records[1],
        "C": records[4],
    }
    for key, body in expected.items():
        chunks = spill.KeyChunks(tmp_path, key)
        got, rows = b"", 0
        while (chunk := chunks.next_chunk()) is not None:
            rows += chunk[0]
            got += chunk[1]
        chunks.close()
        assert (got, rows) == (body, manifest.rows[key])


def test_rendered_records_cut_in_any_chunks_give_the_same_parts(tmp_path: Path) -> None:
    """The cut groups a call's records by key: chunks of one record, of a line cut in two, or
    the whole result at once give the same parts, in arrival order; a part smaller than a
    read chunk is read in one call, to its end (closed: no further call is needed)."""
    spec = connectors.ServerCSV(
        delimiter=";",
        quote_char="'",
        quote_all=False,
        null_text="NULL",
        true_text="1",
        false_text="0",
        line_ending="\r\n",
    )
    records = []
    for n in range(300):
        key = ["a", "b", "'c;d'", "NULL", " a "][n % 5]
        note = "'x\r\ny'" if n % 7 == 0 else ("'it''s'" if n % 3 == 0 else f"n{n}")
        records.append(f"{n};{key};{note}\r\n".encode())
    data = b"".join(records)
    feeds = {
        "records": records,
        "halves": [part for r in records for part in (r[:3], r[3:])],
        "whole": [data],
    }
    found = {}
    for name, feed in feeds.items():
        directory = tmp_path / name
        directory.mkdir()
        spilled = spill.KeySpill(directory, key_index=1, csv=spec, buffer_bytes=500)
        for chunk in feed:
            spilled.add_rendered(chunk)
        manifest = spilled.finish(())
        parts = {}
        for key in manifest.rows:
            chunks = spill.KeyChunks(directory, key)
            chunk = chunks.next_chunk()
            assert chunk is not None and chunks.finished
            parts[key] = chunk
        found[name] = (manifest.rows, manifest.null_rows, parts)
    assert found["records"] == found["halves"] == found["whole"]
    rows, null_rows, parts = found["whole"]
    assert rows == {"a": 120, "b": 60, "c;d": 60} and null_rows == 60
    assert parts["a"] == (120, b"".join(r for i, r in enumerate(records) if i % 5 in (0, 4)))
    assert parts["c;d"][1] == b"".join(records[2::5])


async def test_a_finished_spill_is_reused_and_an_unfinished_one_redone(
    engine_store: Store, data: Path, tmp_path: Path
) -> None:
    """A parent that carries on (recovered, or its split interrupted) reads the query again
    only when its spill did not finish: the header is the mark."""
    from reporthubd import domain
    from reporthubd.engine.pool import Pool
    from reporthubd.store import executions
    from reporthubd.timeutil import utcnow

    ds = await add_datasource(engine_store, "sqlite", {"path": str(data)})
    config_id = await add_config(engine_store, ds, QUERY, format_options={"split_by": "branch"})
    definitions = await executions.load_run_definitions(
        engine_store, config_id, None, default_timezone="UTC"
    )
    await audience_rows.open_burst(engine_store, "burst-1", config_id)
    await audience_rows.add_audiences(
        engine_store,
        [audience_rows.Audience(burst_id="burst-1", key=k, seq=i) for i, k in enumerate(["B001"])],
    )
    driver = audience_rows.AudienceDriver(
        id=1, config_id=config_id, datasource_id=ds, query_text="x", key_column="branch"
    )
    execution = domain.Execution(
        id="burst-1",
        config_id=config_id,
        schedule_id=None,
        trigger_type=domain.TriggerType.MANUAL,
        scheduled_for=None,
        status=domain.ExecutionStatus.RUNNING,
        parameters={},
        created_at=utcnow(),
    )
    settings = engine_settings(tmp_path)

    async def split() -> splitting.SplitOutcome | None:
        return await splitting.split_rows(
            settings,
            engine_store,
            Pool(2),
            execution,
            definitions,
            driver,
            {},
            burst_id="burst-1",
            seq=0,
            on_queued=lambda: None,
            progress=streaming.Progress(execution_id="burst-1"),
        )

    first = await split()
    assert first is not None and first.files == 1 and first.orphan_count == 25
    with sqlite3.connect(data) as conn:
        conn.execute("ALTER TABLE sales RENAME TO gone")
    conn.close()
    assert await split() == first  # the finished spill: the query is not read again
    directory = splitting.directory_of(settings.execution.workspace, "burst-1")
    (directory / spill.HEADER).unlink()  # as if the pass had stopped before its end
    with pytest.raises(splitting.SplitFailed, match="no such table: sales"):
        await split()
    assert not directory.exists()  # an unfinished spill is never left to be read
