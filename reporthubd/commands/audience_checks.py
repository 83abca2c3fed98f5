"""`reporthubd check` for data-driven reports: each active driver query is run (read-only, as
its dry run does, engine/dryrun.py) and its columns and rows checked against what its report
needs: a column that is no parameter of the report, a row without recipients for a report with
an email delivery, a duplicate key, a missing key column, a time zone that does not exist. Each
problem is one row error naming the driver, the report and the column or key."""

from __future__ import annotations

from reporthubd import domain, secrets
from reporthubd.config import Settings
from reporthubd.store import audiences as audience_rows
from reporthubd.store.database import Store


async def problems(store: Store, settings: Settings) -> list[domain.RowError]:
    drivers = await audience_rows.active_drivers(store)
    if not drivers:
        return []
    # Only a store with drivers pays for the engine's and the connectors' imports.
    from reporthubd.connectors import base as connectors
    from reporthubd.engine import audiences, dryrun
    from reporthubd.store import executions

    found = []
    for driver in drivers:
        try:
            await dryrun.dry_run(store, settings, driver.config_id, limit=0)
        except (
            audiences.AudienceProblem,
            executions.DefinitionProblem,
            connectors.ConnectorError,
            secrets.SecretError,
            OSError,
            TimeoutError,
        ) as exc:
            message = str(exc) or type(exc).__name__
            found.append(
                domain.RowError(
                    table="report_audience_drivers",
                    row_id=driver.id,
                    problems=(f"report config {driver.config_id}: {message}",),
                )
            )
    return found
