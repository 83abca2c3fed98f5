"""`reporthubd check`: the configuration, the store and every active definition row, in one
readable report on standard output. Exit 0 only when all three are well.

The configuration part lists every effective setting with the place its value came from (a
default, the TOML file and line, a REPORTHUBD_* or seed variable and its `.env` file), secrets
masked, then the loader's notices. A conflict between sources never gets here: loading fails
with both sources named (exit 2).

Offline by default: no data source is contacted. With `--connect`, each report's column
formats and chart are also checked against its query's real columns, which the data source
describes without running the query (commands/column_checks.py)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from reporthubd import bootstrap, domain, secrets
from reporthubd.commands import (
    EXIT_OK,
    EXIT_PROBLEM,
    alert_checks,
    audience_checks,
    dependency_checks,
    section_checks,
    split_checks,
)
from reporthubd.config import LoadedSettings
from reporthubd.deliverers import config_check
from reporthubd.formats import base as formats
from reporthubd.formats import capture
from reporthubd.notify import checks as notice_checks
from reporthubd.store.definitions import load_definitions


def _shown(key: str, value: Any) -> str:
    """A setting's value as a TOML value, a secret masked and a URL without its password."""
    if value is None:
        return "(unset)"
    if secrets.is_secret_key(key):
        return json.dumps(secrets.MASK)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(secrets.redact_text(value), ensure_ascii=False)
    return json.dumps(value if isinstance(value, int | float | list) else str(value))


def print_sources(loaded: LoadedSettings) -> None:
    print("settings (value  # where it came from):")
    for section, model in loaded.settings:
        for key, value in model:
            source = loaded.sources[f"{section}.{key}"]
            print(f"  {section}.{key} = {_shown(key, value)}  # {source}")
    for notice in loaded.notices:
        print(f"  notice: {notice}")


def delivery_problems(deliveries: Iterable[domain.Delivery]) -> list[domain.RowError]:
    """Each active delivery whose settings its method refuses (chat tokens and URLs, webhook
    bodies and signatures: deliverers/config_check.py), every problem naming its key."""
    return [
        domain.RowError(table="report_deliveries", row_id=delivery.id, problems=tuple(found))
        for delivery in deliveries
        if (found := config_check.problems(delivery.method, delivery.delivery_config))
    ]


def format_problems(configs: Iterable[domain.ReportConfig]) -> list[domain.RowError]:
    """Each config whose format_options its writer refuses (column formats included)."""
    problems = []
    for config in configs:
        try:
            capture.check_options(config.output_format.value, config.format_options)
        except formats.FormatError as exc:
            problems.append(
                domain.RowError(
                    table="report_configs", row_id=config.id, problems=(f"{config.name!r}: {exc}",)
                )
            )
    return problems


async def main(loaded: LoadedSettings, path: Path | None, *, connect: bool = False) -> int:
    settings = loaded.settings
    print(f"config: {path or '(built-in defaults and environment)'}: ok")
    print_sources(loaded)
    try:
        async with bootstrap.open_store(settings) as opened:
            print(f"store: {opened.store.location}: schema {opened.revision} (up to date)")
            found = await load_definitions(
                opened.store, default_timezone=settings.scheduler.timezone
            )
            notice_problems = await notice_checks.problems(opened.store)
            notice_problems += await audience_checks.problems(opened.store, settings)
            notice_problems += await split_checks.problems(opened.store, found)
            driven = await section_checks.driven(opened.store)
    except bootstrap.StoreRefused as exc:
        print(exc)
        return EXIT_PROBLEM
    print(
        f"definitions: {len(found.datasources)} datasources, {len(found.configs)} report configs, "
        f"{len(found.schedules)} schedules, {len(found.deliveries)} deliveries valid"
    )
    for warning in found.warnings:
        print(f"  warning: {warning}")
    described: list[domain.RowError] = []
    if connect:
        from reporthubd.commands import column_checks  # the connectors only when asked

        described, notes = await column_checks.problems(found, settings)
        for note in notes:
            print(f"  note: {note}")
    errors = [
        *found.errors,
        *format_problems(found.configs.values()),
        *delivery_problems(found.deliveries.values()),
        *dependency_checks.problems(found),
        *section_checks.problems(found, driven),
        *alert_checks.problems(found.configs.values()),
        *notice_problems,
        *described,
    ]
    if errors:
        print(f"problems: {len(errors)} invalid active rows")
        for error in sorted(errors, key=lambda e: (e.table, str(e.row_id))):
            print(f"  - {error}")
        return EXIT_PROBLEM
    print("all well")
    return EXIT_OK
