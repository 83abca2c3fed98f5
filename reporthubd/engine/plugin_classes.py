"""A run's plugin classes (its writer, its connector), found once per process.

The first use of a format or a datasource type imports its library (reportlab, an SDK: up to a
second), so the lookup runs in a worker thread; later runs take the class found then, without a
thread's hop (about 60 µs of CPU each: a split of 1,000 files made 2,000 of them,
bench/README.md)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_FOUND: dict[tuple[Callable[[str], Any], str], Any] = {}


async def plugin_class(lookup: Callable[[str], T], name: str) -> T:
    """`lookup(name)` (formats.writer_class, connectors.connector_class), once per process; its
    errors (an unknown name, a missing library) are raised each time, never kept."""
    key = (lookup, name)
    if key in _FOUND:
        found: T = _FOUND[key]
        return found
    found = await asyncio.to_thread(lookup, name)
    _FOUND[key] = found
    return found
