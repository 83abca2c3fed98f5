"""`reporthubd db upgrade` (apply pending migrations, idempotent) and `reporthubd db current`
(where the store's schema stands against this version's)."""

from __future__ import annotations

import sys

from reporthubd import bootstrap
from reporthubd.commands import EXIT_OK, EXIT_PROBLEM
from reporthubd.config import Settings


async def upgrade(settings: Settings) -> int:
    try:
        async with bootstrap.open_store(settings, upgrade=True) as opened:
            location = opened.store.location
    except bootstrap.StoreRefused as exc:
        print(exc, file=sys.stderr)
        return EXIT_PROBLEM
    if opened.upgraded:
        print(f"store {location}: upgraded {opened.found or '(empty)'} -> {opened.revision}")
    else:
        print(f"store {location}: already at {opened.revision}, nothing to do")
    return EXIT_OK


async def current(settings: Settings) -> int:
    try:
        async with bootstrap.connect(settings) as store:
            state = await bootstrap.schema_state(store)
    except bootstrap.StoreRefused as exc:
        print(exc, file=sys.stderr)
        return EXIT_PROBLEM
    print(f"store {store.location}")
    print(f"current: {state.current or '(no schema)'}")
    print(f"head:    {state.head}")
    if problem := state.problem():
        print(problem)
        return EXIT_PROBLEM
    print("up to date")
    return EXIT_OK
