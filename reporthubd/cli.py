"""Command line: `reporthubd run | check | db | apply | export | version | demo` and more.

Exit codes: 0 all well, 1 a problem found or a failure, 2 an invalid configuration or usage.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from reporthubd import __version__, logs
from reporthubd.config import ConfigError, Settings, load_settings, resolve_config_path
from reporthubd.engine import cli as execute_cli
from reporthubd.scheduler import next_cli

EXIT_OK = 0
EXIT_PROBLEM = 1
EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reporthubd", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument(
            "-c",
            "--config",
            metavar="FILE",
            help="configuration file (default: $REPORTHUBD_CONFIG, then "
            "/etc/reporthubd/config.toml)",
        )
        return p

    with_config(sub.add_parser("run", help="run the daemon in the foreground"))
    with_config(sub.add_parser("check", help="validate the config, the store and every active row"))
    db = sub.add_parser("db", help="store schema: upgrade, current")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    with_config(db_sub.add_parser("upgrade", help="apply pending migrations (idempotent)"))
    with_config(db_sub.add_parser("current", help="show the store's schema revision"))
    sub.add_parser("version", help="print the version")
    execute_cli.add_parser(sub, with_config)
    next_cli.add_parser(sub, with_config)
    apply = with_config(sub.add_parser("apply", help="upsert the definitions of a catalog file"))
    apply.add_argument("file", help="catalog TOML file (see examples/catalog.toml)")
    apply.add_argument("--dry-run", action="store_true", help="show the changes, write nothing")
    apply.add_argument("--prune", action="store_true", help="remove what the file does not name")
    export = with_config(sub.add_parser("export", help="write the store's definitions as TOML"))
    export.add_argument("-o", "--output", help="file to write (default: standard output)")
    demo = sub.add_parser(
        "demo", help="the daemon with sample data and demo reports in a local folder"
    )
    demo.add_argument(
        "--dir", default="reporthubd-demo", help="the demo folder (default: ./reporthubd-demo)"
    )
    demo.add_argument(
        "--listen",
        help="control plane address (default: 127.0.0.1:8000, or a free port if 8000 is taken)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "version":
        print(f"reporthubd {__version__}")
        return EXIT_OK
    if args.command == "next":
        return next_cli.main(args)
    if args.command == "demo":
        from reporthubd import demo

        return demo.main(Path(args.dir), listen=args.listen)
    try:
        path = resolve_config_path(args.config)
        settings = load_settings(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    logs.configure(settings.logging)
    if args.command == "execute":
        return asyncio.run(execute_cli.main(args, settings))
    if args.command in {"apply", "export"}:
        from reporthubd import catalog_cli

        return asyncio.run(catalog_cli.main(args, settings))
    handlers: dict[str, Callable[[Settings, Path | None], Coroutine[Any, Any, int]]] = {
        "run": run,
        "check": check,
        "db:upgrade": db_upgrade,
        "db:current": db_current,
    }
    key = f"db:{args.db_command}" if args.command == "db" else args.command
    return asyncio.run(handlers[key](settings, path))


async def run(settings: Settings, path: Path | None) -> int:
    from reporthubd.daemon import Daemon

    return await Daemon(settings, config_path=path).run()


async def db_upgrade(settings: Settings, _: Path | None) -> int:
    from reporthubd.store import migrate
    from reporthubd.store.database import Store, StoreUnavailable

    store = Store(settings.store)
    await store.start()
    try:
        await store.ping(limit_seconds=settings.store.connect_timeout_seconds)
        state = await migrate.schema_state(store)
        if not state.known:
            print(state.problem(), file=sys.stderr)
            return EXIT_PROBLEM
        before, after = await migrate.upgrade(store)
    except StoreUnavailable as exc:
        print(exc, file=sys.stderr)
        return EXIT_PROBLEM
    finally:
        await store.stop()
    if before == after:
        print(f"store {store.location}: already at {after}, nothing to do")
    else:
        print(f"store {store.location}: upgraded {before or '(empty)'} -> {after}")
    return EXIT_OK


async def db_current(settings: Settings, _: Path | None) -> int:
    from reporthubd.store import migrate
    from reporthubd.store.database import Store, StoreUnavailable

    store = Store(settings.store)
    await store.start()
    try:
        state = await migrate.schema_state(store)
    except StoreUnavailable as exc:
        print(exc, file=sys.stderr)
        return EXIT_PROBLEM
    finally:
        await store.stop()
    print(f"store {store.location}")
    print(f"current: {state.current or '(no schema)'}")
    print(f"head:    {state.head}")
    if problem := state.problem():
        print(problem)
        return EXIT_PROBLEM
    print("up to date")
    return EXIT_OK


async def check(settings: Settings, path: Path | None) -> int:
    """Print a readable report; exit 0 only when the config, the store and every row are well."""
    from reporthubd.store import migrate
    from reporthubd.store.database import Store, StoreUnavailable
    from reporthubd.store.definitions import load_definitions

    print(f"config: {path or '(built-in defaults and environment)'}: ok")
    store = Store(settings.store)
    await store.start()
    try:
        try:
            await store.ping(limit_seconds=settings.store.connect_timeout_seconds)
        except StoreUnavailable as exc:
            print(f"store: {exc}")
            return EXIT_PROBLEM
        state = await migrate.schema_state(store)
        if problem := state.problem():
            print(f"store: {store.location}: {problem}")
            return EXIT_PROBLEM
        print(f"store: {store.location}: schema {state.current} (up to date)")
        found = await load_definitions(store, default_timezone=settings.scheduler.timezone)
    finally:
        await store.stop()
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
