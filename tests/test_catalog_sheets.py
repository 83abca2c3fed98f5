"""A workbook in the catalog: `[[reports.format_options.sheets]]` applies, exports and re-applies
unchanged; a sheet name Excel refuses and a sheet on an unknown datasource are refused naming
their key, and nothing is written."""

from __future__ import annotations

import pytest

from reporthubd import catalog
from reporthubd.store import catalog as store_catalog
from reporthubd.store.database import Store

TEXT = """
[[datasources]]
name = "sales"
type = "sqlite"
connection_config = { path = "/tmp/sales.db" }

[[datasources]]
name = "warehouse"
type = "sqlite"
connection_config = { path = "/tmp/warehouse.db" }

[[reports]]
name = "Month end"
datasource = "sales"
output_format = "excel"
query = "SELECT * FROM orders WHERE month = :month"
parameters = { month = "{{ yesterday.strftime('%Y-%m') }}" }

[reports.format_options]
sheet_name = "Orders"

[[reports.format_options.sheets]]
name = "Refunds"
query = "SELECT * FROM refunds WHERE month = :month"

[[reports.format_options.sheets]]
name = "Stock"
datasource = "warehouse"
query = "SELECT sku, qty FROM stock"
columns = [{ name = "qty", kind = "number", decimals = 0 }]
"""


async def test_a_workbook_round_trips(store: Store) -> None:
    plan = await store_catalog.apply(store, catalog.parse(TEXT))
    assert not plan.empty
    exported, problems = await store_catalog.export(store)
    assert problems == []
    sheets = exported.reports[0].format_options["sheets"]
    assert [s["name"] for s in sheets] == ["Refunds", "Stock"]
    assert sheets[1]["datasource"] == "warehouse"
    again = catalog.parse(catalog.render(exported))
    assert (await store_catalog.apply(store, again)).empty
    # --prune keeps a datasource only a sheet uses, even when the file no longer lists it.
    block = '[[datasources]]\nname = "warehouse"\ntype = "sqlite"\n'
    block += 'connection_config = { path = "/tmp/warehouse.db" }\n'
    assert block in TEXT
    plan = await store_catalog.apply(store, catalog.parse(TEXT.replace(block, "")), prune=True)
    assert plan.empty, plan.changes


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (('name = "Refunds"', 'name = "Refunds/Returns"'), "'sheets[1].name' must not contain '/'"),
        (('name = "Stock"', 'name = "orders"'), "'sheets[2].name': 'orders' is already the name"),
        (('name = "Stock"', 'name = "' + "S" * 32 + '"'), "'sheets[2].name' must be 1 to 31"),
    ],
)
def test_a_sheet_name_excel_refuses_names_its_key(edit: tuple[str, str], expected: str) -> None:
    with pytest.raises(catalog.CatalogError) as caught:
        catalog.parse(TEXT.replace(*edit))
    assert [p.where for p in caught.value.problems] == ["reports[0]"]
    assert "format_options: format option " + expected in str(caught.value)


async def test_a_sheet_on_an_unknown_datasource_writes_nothing(store: Store) -> None:
    text = TEXT.replace('datasource = "warehouse"', 'datasource = "nowhere"')
    with pytest.raises(catalog.CatalogError) as caught:
        await store_catalog.apply(store, catalog.parse(text))
    assert [p.where for p in caught.value.problems] == [
        "reports[0].format_options.sheets[2].datasource"
    ]
    assert "no datasource named 'nowhere'" in str(caught.value)
    exported, _ = await store_catalog.export(store)
    assert exported.reports == []
