"""`reporthubd apply FILE [--dry-run] [--prune]` and `reporthubd export [-o FILE]`."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from reporthubd import catalog
from reporthubd.config import Settings
from reporthubd.store import catalog as store_catalog
from reporthubd.store import migrate
from reporthubd.store.database import Store, StoreUnavailable


async def main(args: argparse.Namespace, settings: Settings) -> int:
    store = Store(settings.store)
    await store.start()
    try:
        await store.ping(limit_seconds=settings.store.connect_timeout_seconds)
        state = await migrate.schema_state(store)
        if problem := state.problem():
            print(problem, file=sys.stderr)
            return 1
        if args.command == "apply":
            return await _apply(store, Path(args.file), dry_run=args.dry_run, prune=args.prune)
        return await _export(store, args.output)
    except StoreUnavailable as exc:
        print(exc, file=sys.stderr)
        return 1
    finally:
        await store.stop()


async def _apply(store: Store, path: Path, *, dry_run: bool, prune: bool) -> int:
    try:
        text = await asyncio.to_thread(path.read_text, encoding="utf-8")
    except OSError as exc:
        print(f"{path}: {exc.strerror}", file=sys.stderr)
        return 2
    try:
        parsed = catalog.parse(text, source=str(path))
        plan = await store_catalog.apply(store, parsed, prune=prune, dry_run=dry_run)
    except catalog.CatalogError as exc:
        print(str(exc).replace("catalog:", f"{path}:", 1), file=sys.stderr)
        print("nothing was written", file=sys.stderr)
        return 1
    for change in plan.changes:
        print(change)
    verb = "would apply" if dry_run else "applied"
    print(f"{verb}: {plan.summary()}" if not plan.empty else "no changes")
    return 0


async def _export(store: Store, output: str | None) -> int:
    found, errors = await store_catalog.export(store)
    text = catalog.render(found)
    if output:
        await asyncio.to_thread(Path(output).write_text, text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    for error in errors:
        print(f"not exported: {error}", file=sys.stderr)
    return 1 if errors else 0
