"""The demo reports: the packaged catalog `reporthubd/demo_catalog.toml`, applied to the demo
store through `store.catalog.apply` on every start (matched by name: a second run changes
nothing), after the store is upgraded to this version's schema."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from reporthubd import bootstrap, catalog, domain
from reporthubd.config import Settings
from reporthubd.store import catalog as store_catalog
from reporthubd.store.definitions import load_definitions

CATALOG_RESOURCE = "demo_catalog.toml"
DEMO_REPORTS = ("daily-orders", "regional-sales", "sales-summary", "orders-feed")
"""The packaged catalog's reports, in the order the banner lists them. Each is run once at
start-up (a manual run), so one file of each format lands before the first scheduled fire."""


def demo_catalog(folder: Path) -> catalog.Catalog:
    """The packaged demo catalog with its relative paths made absolute under `folder`."""
    text = resources.files("reporthubd").joinpath(CATALOG_RESOURCE).read_text(encoding="utf-8")
    data = tomllib.loads(text)
    for datasource in data.get("datasources", []):
        if datasource.get("type") == "sqlite":
            config = datasource["connection_config"]
            config["path"] = str(folder / config["path"])
    for report in data.get("reports", []):
        for delivery in report.get("deliveries", []):
            if delivery.get("method") == "file_share":
                delivery["config"]["path"] = str(folder / delivery["config"]["path"])
    return catalog.Catalog.model_validate(data)


@dataclass(frozen=True, kw_only=True)
class Applied:
    summary: str
    configs: dict[str, domain.ReportConfig]
    """By name."""
    schedules: list[domain.Schedule]


class DemoError(Exception):
    """The demo cannot start; the message says why."""


async def prepare_store(settings: Settings, folder: Path) -> Applied:
    """Upgrade the demo store and apply the demo catalog (one transaction, idempotent).
    Raises DemoError for a store this version cannot use or a catalog that does not apply."""
    try:
        async with bootstrap.open_store(settings, upgrade=True) as opened:
            store = opened.store
            try:
                plan = await store_catalog.apply(store, demo_catalog(folder))
            except catalog.CatalogError as exc:
                raise DemoError(
                    f"the demo reports do not apply to {store.location}: {exc}"
                ) from None
            found = await load_definitions(store, default_timezone=settings.scheduler.timezone)
    except bootstrap.StoreRefused as exc:
        raise DemoError(str(exc)) from None
    return Applied(
        summary=plan.summary() if not plan.empty else "no changes",
        configs={config.name: config for config in found.configs.values()},
        schedules=sorted(found.schedules.values(), key=lambda s: s.id),
    )
