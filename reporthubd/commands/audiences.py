"""`reporthubd audiences CONFIG_ID [--param k=v ...] [--limit N] [--json]`: a data-driven
report's dry run (engine/dryrun.py): the audiences its driver yields now, with their parameters
and targets; nothing is run, written or sent. Exit 0 when the driver is valid, 1 when it is not
(the message names the column or key), 2 for bad arguments."""

from __future__ import annotations

import argparse
import json
import sys

from reporthubd import bootstrap, secrets
from reporthubd.commands import EXIT_OK, EXIT_PROBLEM, EXIT_USAGE
from reporthubd.commands.execute import parse_params
from reporthubd.config import Settings
from reporthubd.connectors import base as connectors
from reporthubd.engine import audiences, dryrun
from reporthubd.store import executions


async def main(args: argparse.Namespace, settings: Settings) -> int:
    try:
        overrides = parse_params(args.param)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    try:
        async with bootstrap.open_store(settings) as opened:
            listing = await dryrun.dry_run(
                opened.store, settings, args.config_id, parameters=overrides, limit=args.limit
            )
    except (
        bootstrap.StoreRefused,
        dryrun.NoDriver,
        executions.DefinitionProblem,
        audiences.AudienceProblem,
        connectors.ConnectorError,
        secrets.SecretError,
        OSError,
    ) as exc:
        print(exc, file=sys.stderr)
        return EXIT_PROBLEM
    if args.json:
        print(json.dumps(listing.as_json(), default=str))
        return EXIT_OK
    print(f"{listing.report_name}: {len(listing.audiences)} audiences (dry run, nothing sent)")
    for entry in listing.audiences:
        own = {
            k: v
            for k, v in entry["parameters"].items()
            if k not in listing.parameters or listing.parameters[k] != v
        }
        print(f"  {entry['key']}: {', '.join(entry['targets']) or '(no targets)'}")
        if own:
            print(f"    parameters: {json.dumps(own, default=str)}")
        if entry["overrides"]:
            print(f"    overrides: {json.dumps(entry['overrides'])}")
    return EXIT_OK
