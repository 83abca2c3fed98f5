"""`reporthubd check`: the configuration, the store and every active definition row, in one
readable report on standard output. Exit 0 only when all three are well."""

from __future__ import annotations

from pathlib import Path

from reporthubd import bootstrap
from reporthubd.commands import EXIT_OK, EXIT_PROBLEM
from reporthubd.config import Settings
from reporthubd.store.definitions import load_definitions


async def main(settings: Settings, path: Path | None) -> int:
    print(f"config: {path or '(built-in defaults and environment)'}: ok")
    try:
        async with bootstrap.open_store(settings) as opened:
            print(f"store: {opened.store.location}: schema {opened.revision} (up to date)")
            found = await load_definitions(
                opened.store, default_timezone=settings.scheduler.timezone
            )
    except bootstrap.StoreRefused as exc:
        print(exc)
        return EXIT_PROBLEM
    print(
        f"definitions: {len(found.datasources)} datasources, {len(found.configs)} report configs, "
        f"{len(found.schedules)} schedules, {len(found.deliveries)} deliveries valid"
    )
    for warning in found.warnings:
        print(f"  warning: {warning}")
    if found.errors:
        print(f"problems: {len(found.errors)} invalid active rows")
        for error in sorted(found.errors, key=lambda e: (e.table, str(e.row_id))):
            print(f"  - {error}")
        return EXIT_PROBLEM
    print("all well")
    return EXIT_OK
