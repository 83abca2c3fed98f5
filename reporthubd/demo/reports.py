"""The demo reports: the packaged catalog `reporthubd/demo_catalog.toml`, applied to the demo
store through `store.catalog.apply` on every start (matched by name: a second run changes
nothing), after the store is upgraded to this version's schema.

A notice target names a delivery row by its id (`delivery:ID`), which exists only once the
catalog is applied: the catalog writes `@<report>/<delivery>` there, and `prepare_store` puts
the row's id in its place (on a fresh store: applying once without that rule, reading the id,
and applying again)."""

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
DEMO_REPORTS = (
    "daily-orders",
    "regional-sales",
    "sales-summary",
    "orders-feed",
    "big-orders",
    "inventory-check",
)
"""The packaged catalog's reports, in the order the banner lists them. Each is run once at
start-up (a manual run), so one file of each format lands before the first scheduled fire,
the alert decides once and the failing report sends its first notice. The failing report's
start-up run is a manual fire of its schedule (`notified_schedule`): an incident is one
stream's (a schedule's runs, or the report's runs started by hand; store/incidents.py), so the
start-up run and the scheduled fires that follow it make one incident and one `failed` notice."""
ALERT_REPORT = "big-orders"
NOTIFIED_REPORT = "inventory-check"
NOTICE_CHANNEL = ("on-call-notices", "notices-folder")
"""(report, delivery) of the folder the demo's notices go to (reports/notices/)."""


def _target(value: object, delivery_id: int | None) -> object:
    wanted = "@" + "/".join(NOTICE_CHANNEL)
    if value != wanted:
        return value
    return f"delivery:{delivery_id}" if delivery_id is not None else None


def demo_catalog(folder: Path, notice_delivery_id: int | None = None) -> catalog.Catalog:
    """The packaged demo catalog with its relative paths made absolute under `folder`, and the
    notice channel's `@report/delivery` as `delivery:<notice_delivery_id>` (None: the rules
    naming it are left out, until the row exists)."""
    text = resources.files("reporthubd").joinpath(CATALOG_RESOURCE).read_text(encoding="utf-8")
    data = tomllib.loads(text)
    for report in data.get("reports", []):
        notify = report.get("notify")
        if not notify:
            continue
        rules = []
        for rule in notify.get("rules", []):
            targets = [_target(t, notice_delivery_id) for t in rule.get("notify", [])]
            if all(t is not None for t in targets):
                rules.append(rule | {"notify": targets})
        if rules:
            report["notify"] = notify | {"rules": rules}
        else:
            del report["notify"]
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


def notified_schedule(applied: Applied) -> domain.Schedule | None:
    """The schedule of the report that fails on purpose, whose stream of runs the demo's
    notices follow (its start-up run and the banner's commands fire it)."""
    config = applied.configs.get(NOTIFIED_REPORT)
    if config is None:
        return None
    return next((s for s in applied.schedules if s.config_id == config.id), None)


class DemoError(Exception):
    """The demo cannot start; the message says why."""


async def prepare_store(settings: Settings, folder: Path) -> Applied:
    """Upgrade the demo store and apply the demo catalog (one transaction, idempotent).
    Raises DemoError for a store this version cannot use or a catalog that does not apply."""
    try:
        async with bootstrap.open_store(settings, upgrade=True) as opened:
            store = opened.store
            try:
                channel = await store_catalog.delivery_id(store, *NOTICE_CHANNEL)
                first = None
                if channel is None:  # a fresh store: the channel's row first, then its id
                    first = await store_catalog.apply(store, demo_catalog(folder))
                    channel = await store_catalog.delivery_id(store, *NOTICE_CHANNEL)
                plan = await store_catalog.apply(store, demo_catalog(folder, channel))
                plan = first or plan
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
