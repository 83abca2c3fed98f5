"""What the control plane sees of the daemon, and the one way a handler reaches it.

`build_app` keeps the daemon (`reporthubd.daemon.Daemon`, or any object with the attributes of
`Runtime`) under `RUNTIME_KEY`; a handler calls `runtime(request)` and uses only what `Runtime`
declares. The daemon's components are None until it has started them (and in a daemon started
without them): `engine(request)`, `scheduler(request)` and `deliveries(request)` answer a 503 in
the envelope then, through the app's error middleware. Nothing here builds a stand-in for a
missing component: work is done by the daemon's own, or refused.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from aiohttp import web

from reporthubd.config import Settings
from reporthubd.engine.engine import Engine
from reporthubd.engine.ledger import DeliveryLedger
from reporthubd.lifecycle.events import Events, RecentTransitions
from reporthubd.scheduler.loop import Scheduler
from reporthubd.store.database import Store


class Runtime(Protocol):
    """The daemon as the control plane sees it: read-only, and exactly what handlers use."""

    @property
    def node_id(self) -> str: ...
    @property
    def started_at(self) -> datetime: ...
    @property
    def store(self) -> Store: ...
    @property
    def settings(self) -> Settings:
        """The settings in force (a reload replaces them)."""
        ...

    @property
    def draining(self) -> bool:
        """True once the daemon is stopping: /readyz answers 503."""
        ...

    @property
    def transitions(self) -> RecentTransitions:
        """This node's latest execution state changes (a lifecycle subscriber)."""
        ...

    @property
    def events(self) -> Events:
        """This node's lifecycle event bus (the console's live feed subscribes to it)."""
        ...

    @property
    def engine(self) -> Engine | None: ...
    @property
    def scheduler(self) -> Scheduler | None: ...
    @property
    def deliveries(self) -> DeliveryLedger | None:
        """The daemon's delivery ledger: retries it schedules wake the daemon's retry worker."""
        ...


RUNTIME_KEY: web.AppKey[Runtime] = web.AppKey("runtime")


def runtime(request: web.Request) -> Runtime:
    return request.app[RUNTIME_KEY]


def engine(request: web.Request) -> Engine:
    """The daemon's engine; a 503 while it does not run one."""
    found = runtime(request).engine
    if found is None:
        raise web.HTTPServiceUnavailable(reason="the execution engine is not running")
    return found


def scheduler(request: web.Request) -> Scheduler:
    """The daemon's scheduler; a 503 while it does not run one."""
    found = runtime(request).scheduler
    if found is None:
        raise web.HTTPServiceUnavailable(reason="scheduler not running")
    return found


def deliveries(request: web.Request) -> DeliveryLedger:
    """The daemon's delivery ledger; a 503 while it does not run one."""
    found = runtime(request).deliveries
    if found is None:
        raise web.HTTPServiceUnavailable(reason="the delivery ledger is not running")
    return found
