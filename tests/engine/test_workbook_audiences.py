"""A workbook as a per-audience child (engine.audiences): each branch's file holds its own rows
on both sheets, the second sheet's query bound to the audience's parameter."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from reporthubd.engine import Engine
from reporthubd.store import schema
from reporthubd.store.database import Store
from tests.deliverers.peers import WebhookReceiver
from tests.engine.conftest import add_config, add_datasource, run_to_end
from tests.engine.test_audiences import (  # noqa: F401 - fixtures
    BRANCHES,
    add_driver,
    add_webhook,
    data,
    engine,
    receiver,
)


async def test_each_audience_gets_its_own_workbook(
    engine: Engine,  # noqa: F811
    engine_store: Store,
    data: Path,  # noqa: F811
    receiver: WebhookReceiver,  # noqa: F811
) -> None:
    openpyxl = pytest.importorskip("openpyxl")
    ds = await add_datasource(engine_store, "sqlite", {"path": str(data)})
    config = await add_config(
        engine_store,
        ds,
        "SELECT branch, amount FROM sales WHERE branch = :branch ORDER BY amount",
        output_format="excel",
        file_name_template="statement_{{ branch }}",
        format_options={
            "sheet_name": "Sales",
            "sheets": [
                {
                    "name": "Branch",
                    "query": "SELECT code, city FROM branches WHERE code = :branch",
                }
            ],
        },
    )
    await add_driver(
        engine_store,
        config,
        ds,
        "SELECT code AS branch, manager AS recipients FROM branches",
        key_column="branch",
    )
    await add_webhook(engine_store, config, receiver.url)

    parent = await run_to_end(engine, config)

    assert parent.status.value == "COMPLETED", parent.error_message
    e = schema.executions
    async with engine_store.engine.connect() as conn:
        files = (
            await conn.execute(
                sa.select(e.c.file_name, e.c.file_path, e.c.status).where(e.c.id != parent.id)
            )
        ).all()
    assert len(files) == BRANCHES
    for name, path, status in files:
        assert status == "COMPLETED"
        branch = name.removeprefix("statement_").removesuffix(".xlsx")
        book = openpyxl.load_workbook(path, read_only=True)
        assert book.sheetnames == ["Sales", "Branch"]
        sales = list(book["Sales"].iter_rows(values_only=True))[1:]
        assert {row[0] for row in sales} <= {branch}
        assert len(sales) == int(branch[1:]) % 4
        assert list(book["Branch"].iter_rows(values_only=True))[1:] == [
            (branch, f"City {int(branch[1:])}")
        ]
        book.close()
