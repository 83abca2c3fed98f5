"""`reporthubd apply FILE [--dry-run] [--prune]` and `reporthubd export [-o FILE]`: the store's
definitions as a catalog file (see examples/catalog.toml), in and out. `apply` writes in one
transaction, or nothing at all."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from reporthubd import bootstrap, catalog
from reporthubd.commands import EXIT_OK, EXIT_PROBLEM, EXIT_USAGE
from reporthubd.config import Settings
from reporthubd.store import catalog as store_catalog
from reporthubd.store.database import Store


async def main(args: argparse.Namespace, settings: Settings) -> int:
    try:
        async with bootstrap.open_store(settings) as opened:
            if args.command == "apply":
                return await _apply(
                    opened.store, Path(args.file), dry_run=args.dry_run, prune=args.prune
                )
            return await _export(opened.store, args.output)
    except bootstrap.StoreRefused as exc:
        print(exc, file=sys.stderr)
        return EXIT_PROBLEM


async def _apply(store: Store, path: Path, *, dry_run: bool, prune: bool) -> int:
    try:
        text = await asyncio.to_thread(path.read_text, encoding="utf-8")
    except OSError as exc:
        print(f"{path}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    try:
        parsed = catalog.parse(text, source=str(path))
        plan = await store_catalog.apply(store, parsed, prune=prune, dry_run=dry_run)
    except catalog.CatalogError as exc:
        print(str(exc).replace("catalog:", f"{path}:", 1), file=sys.stderr)
        print("nothing was written", file=sys.stderr)
        return EXIT_PROBLEM
    for change in plan.changes:
        print(change)
    for note in plan.notes:
        print(f"! {note}")
    verb = "would apply" if dry_run else "applied"
    print(f"{verb}: {plan.summary()}" if not plan.empty else "no changes")
    return EXIT_OK


async def _export(store: Store, output: str | None) -> int:
    found, errors = await store_catalog.export(store)
    text = catalog.render(found)
    if output:
        await asyncio.to_thread(Path(output).write_text, text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    for error in errors:
        print(f"not exported: {error}", file=sys.stderr)
    return EXIT_PROBLEM if errors else EXIT_OK
