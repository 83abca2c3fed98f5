"""Conditional alerts in the catalog TOML and the store (issue 17, items 2 and 6): a report's
`alert` is applied and exported back; a malformed condition is refused naming its key, by the
catalog and by `reporthubd check`'s reading of a stored row; the alert state holds per report
in the store (every backend)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from reporthubd import catalog
from reporthubd.commands import alert_checks
from reporthubd.store import alerts, schema
from reporthubd.store import catalog as store_catalog
from reporthubd.store.database import Store
from reporthubd.store.definitions import load_definitions

TEXT = """
[[datasources]]
name = "warehouse"
type = "sqlite"
connection_config = { path = "/tmp/warehouse.db" }

[[reports]]
name = "errors-watch"
datasource = "warehouse"
output_format = "csv"
query = "SELECT status, amount FROM events"

[reports.alert]
mode = "on_transition"
condition = { any_row = { column = "status", op = "==", value = "error" } }
"""


async def test_alert_round_trip_and_state(store: Store) -> None:
    parsed = catalog.parse(TEXT)
    assert parsed.reports[0].alert == {
        "mode": "on_transition",
        "condition": {"any_row": {"column": "status", "op": "==", "value": "error"}},
    }
    await store_catalog.apply(store, parsed)
    exported, errors = await store_catalog.export(store)
    assert errors == [] and exported == parsed
    assert catalog.parse(catalog.render(exported)) == parsed
    changed = TEXT.replace('mode = "on_transition"', 'mode = "when_true"')
    assert not (await store_catalog.apply(store, catalog.parse(changed))).empty
    found = await load_definitions(store, default_timezone="UTC")
    (config,) = found.configs.values()
    assert config.alert is not None and config.alert["mode"] == "when_true"
    assert alert_checks.problems(found.configs.values()) == []

    assert await alerts.state(store, config.id) == alerts.AlertState()
    assert await alerts.transition(store, config.id, previous=None, execution_id="e1", truth=True)
    await alerts.save_delivered(store, config.id, execution_id="e1", delivered_sha256="aa")
    # A run judged on the state before e1 does not move it (compare-and-set).
    assert not await alerts.transition(
        store, config.id, previous=None, execution_id="e9", truth=False
    )
    assert await alerts.transition(store, config.id, previous="e1", execution_id="e2", truth=False)
    state = await alerts.state(store, config.id)
    assert state == alerts.AlertState(
        last_truth=False, last_execution_id="e2", delivered_sha256="aa", delivered_execution_id="e1"
    )

    # A row written around the catalog: `check` names the key.
    async with store.engine.begin() as conn:
        await conn.execute(
            sa.update(schema.configs).values(
                alert={"mode": "when_true", "condition": {"row_count": {"op": "~", "value": 1}}}
            )
        )
    found = await load_definitions(store, default_timezone="UTC")
    (problem,) = alert_checks.problems(found.configs.values())
    assert "alert.condition.row_count.op: unknown comparison '~'" in str(problem)


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (('mode = "on_transition"', 'mode = "sometimes"'), "mode: unknown mode 'sometimes'"),
        (('op = "=="', 'op = "=~"'), "condition.any_row.op: unknown comparison '=~'"),
        (('column = "status", ', ""), "condition.any_row.column: required"),
        (("any_row", "some_rows"), "condition.some_rows: unknown condition"),
        (('mode = "on_transition"', 'mode = "when_true"\nlimit = 3'), "limit: unknown key"),
    ],
)
def test_bad_alert_is_refused_naming_the_key(edit: tuple[str, str], says: str) -> None:
    with pytest.raises(catalog.CatalogError) as caught:
        catalog.parse(TEXT.replace(*edit))
    problems = [(p.where, p.message) for p in caught.value.problems]
    assert len(problems) == 1, problems
    assert problems[0][0] == "reports[0].alert" and says in problems[0][1], problems
