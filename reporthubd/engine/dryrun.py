"""A data-driven run's dry run: the audiences, their parameters and their targets, nothing run.

    listing = await dry_run(store, settings, config_id, parameters={"period": "2026-11"})

Reads the report's definitions and its driver, resolves the run's parameters as a manual run
would (defaults, the given overrides, templates rendered now), runs the driver query and checks
every row exactly as a real run does (the same AudienceProblem naming the column or key). It
writes nothing to the store and sends nothing: no execution row, no file, no delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reporthubd import domain, templates
from reporthubd.config import Settings
from reporthubd.connectors import base as connectors
from reporthubd.engine import audience_targets, audiences
from reporthubd.engine.fanout import driver_datasource
from reporthubd.store import audiences as audience_rows
from reporthubd.store import executions
from reporthubd.store.database import Store
from reporthubd.timeutil import utcnow

DRY_RUN_ID = "dry-run"
"""The burst id a dry run draws its (never inserted) child ids from."""


class NoDriver(LookupError):
    """The report has no active driver (or does not exist)."""


@dataclass(frozen=True, kw_only=True)
class Listing:
    config_id: int
    report_name: str
    parameters: dict[str, Any]
    audiences: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "config_id": self.config_id,
            "report_name": self.report_name,
            "parameters": self.parameters,
            "count": len(self.audiences),
            "audiences": self.audiences,
        }


async def dry_run(
    store: Store,
    settings: Settings,
    config_id: int,
    *,
    parameters: Mapping[str, Any] | None = None,
    limit: int | None = None,
) -> Listing:
    """Raises NoDriver, executions.DefinitionProblem, audiences.AudienceProblem,
    connectors.ConnectorError (the message says which)."""
    driver = await audience_rows.get_driver(store, config_id)
    if driver is None:
        raise NoDriver(f"report config {config_id} has no active driver query")
    definitions = await executions.load_run_definitions(
        store, config_id, None, default_timezone=settings.scheduler.timezone
    )
    execution = domain.Execution(
        id=DRY_RUN_ID,
        config_id=config_id,
        schedule_id=None,
        trigger_type=domain.TriggerType.MANUAL,
        scheduled_for=None,
        status=domain.ExecutionStatus.PENDING,
        parameters=dict(parameters or {}),
        created_at=utcnow(),
    )
    try:
        resolved = audiences.resolve_parent(settings, execution, definitions)
    except templates.TemplateError as exc:
        raise audiences.AudienceProblem(str(exc)) from None
    source = await driver_datasource(store, driver)
    connector_cls = await asyncio.to_thread(connectors.connector_class, source.type.value)
    connector = connector_cls(source)
    listing = Listing(config_id=config_id, report_name=definitions.config.name, parameters=resolved)
    timeout = settings.execution.query_timeout_seconds
    try:
        async with asyncio.timeout(timeout):
            await connector.open()
            batches = audiences.read_driver(
                connector,
                driver,
                definitions,
                resolved,
                burst_id=DRY_RUN_ID,
                batch_size=min(settings.execution.batch_size, audience_rows.CHUNK),
                timeout_seconds=timeout,
            )
            async for batch in batches:
                for audience in batch:
                    if limit is not None and len(listing.audiences) >= limit:
                        continue  # read on: every row is still checked
                    listing.audiences.append(_entry(definitions, audience, resolved))
    finally:
        with contextlib.suppress(Exception):
            await asyncio.shield(connector.close())
    return listing


def _entry(
    definitions: executions.RunDefinitions,
    audience: audience_rows.Audience,
    resolved: Mapping[str, Any],
) -> dict[str, Any]:
    return {
        "key": audience.key,
        "recipients": [audience_targets.shown(r) for r in audience.recipients],
        "parameters": {**resolved, **audience.parameters},
        "overrides": dict(audience.overrides),
        "targets": audiences.targets(definitions, audience),
    }
