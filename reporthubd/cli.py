"""Command line: `reporthubd run | check | db | execute | next | pause | resume | backfill |
backfill-cancel | apply | export | version | demo`.

This module parses the command line and loads the settings; each subcommand lives in its own
module (`reporthubd.commands`, `reporthubd.daemon`, `reporthubd.demo`, `scheduler.next_cli`),
imported only once it is chosen, so `reporthubd version`, `--help` and `next --cron` do not load
SQLAlchemy, aiohttp and the engine (about 1.5 s on a busy machine).

Exit codes: 0 all well, 1 a problem found or a failure, 2 an invalid configuration or usage.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from reporthubd import __version__
from reporthubd.commands import EXIT_OK, EXIT_USAGE, backfill_args
from reporthubd.scheduler import next_cli


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
    check = with_config(
        sub.add_parser("check", help="validate the config, the store and every active row")
    )
    check.add_argument(
        "--connect",
        action="store_true",
        help="also check column formats and charts against each query's real columns "
        "(connects to the data sources; runs no query)",
    )
    db = sub.add_parser("db", help="store schema: upgrade, current")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    with_config(db_sub.add_parser("upgrade", help="apply pending migrations (idempotent)"))
    with_config(db_sub.add_parser("current", help="show the store's schema revision"))
    sub.add_parser("version", help="print the version")
    execute = with_config(
        sub.add_parser(
            "execute", help="run one report now, in the foreground, and say where the file is"
        )
    )
    execute.add_argument("config_id", type=int, help="report_configs.id")
    execute.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a parameter (repeatable); VALUE may be a template such as {{ yesterday }}",
    )
    execute.add_argument(
        "--no-deliver", action="store_true", help="produce the file, send it nowhere"
    )
    execute.add_argument("--output", metavar="PATH", help="also copy the produced file to PATH")
    execute.add_argument(
        "--json", action="store_true", help="print the final execution record as JSON"
    )
    next_cli.add_parser(sub, with_config)
    pause = with_config(
        sub.add_parser("pause", help="pause a schedule: its fires are recorded SKIPPED, with why")
    )
    pause.add_argument("schedule_id", type=int, help="report_schedules.id")
    pause.add_argument("--reason", required=True, help="why it is paused (shown on every skip)")
    resume = with_config(
        sub.add_parser("resume", help="resume a paused schedule (no catch-up of the pause)")
    )
    resume.add_argument("schedule_id", type=int, help="report_schedules.id")
    for p in (pause, resume):
        p.add_argument("--by", help="who does it (default: USER@HOST)")
        p.add_argument("--json", action="store_true", help="print the pause state as JSON")
    backfill_args.add_parsers(sub, with_config)
    audiences = with_config(
        sub.add_parser("audiences", help="dry run of a data-driven report: its audiences")
    )
    audiences.add_argument("config_id", type=int, help="report_configs.id")
    audiences.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    audiences.add_argument("--limit", type=int, default=None, help="list at most N audiences")
    audiences.add_argument("--json", action="store_true", help="print the listing as JSON")
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
        from reporthubd.demo import command as demo

        return demo.main(Path(args.dir), listen=args.listen)
    from reporthubd import logs
    from reporthubd.config import ConfigError, load, resolve_config_path

    try:
        path = resolve_config_path(args.config)
        loaded = load(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    settings = loaded.settings
    logs.configure(settings.logging)
    for notice in loaded.notices:
        logs.get("reporthubd.config").warning("configuration notice", notice=notice)
    # The chosen command's module only (see the module docstring).
    if args.command == "run":
        from reporthubd.daemon import Daemon

        return asyncio.run(Daemon(settings, config_path=path).run())
    if args.command == "check":
        from reporthubd.commands import check

        return asyncio.run(check.main(loaded, path, connect=args.connect))
    if args.command == "db":
        from reporthubd.commands import db

        return asyncio.run(
            db.upgrade(settings) if args.db_command == "upgrade" else db.current(settings)
        )
    if args.command == "execute":
        from reporthubd.commands import execute

        return asyncio.run(execute.main(args, settings))
    if args.command == "audiences":
        from reporthubd.commands import audiences as audience_command

        return asyncio.run(audience_command.main(args, settings))
    if args.command in ("pause", "resume"):
        from reporthubd.commands import pause

        return asyncio.run(pause.main(args, settings))
    if args.command in ("backfill", "backfill-cancel"):
        from reporthubd.commands import backfill

        return asyncio.run(backfill.main(args, settings))
    from reporthubd.commands import catalog

    return asyncio.run(catalog.main(args, settings))
