"""The notification service of the daemon: the notifier (lifecycle events to notices, and its
sweep of decisions a killed node never made), the sender (the ledger to delivery methods) and
the deadline watch, each in a named task of the daemon's Supervisor, so that a loop that dies
stops the daemon loudly."""

from __future__ import annotations

from collections.abc import Coroutine
from datetime import datetime
from typing import Any, Protocol

from reporthubd.config import Settings
from reporthubd.lifecycle.events import Events
from reporthubd.notify.deadlines import DeadlineWatch
from reporthubd.notify.notifier import Notifier
from reporthubd.notify.sender import NoticeSender
from reporthubd.store.database import Store


class Tasks(Protocol):
    def spawn(
        self, name: str, coro: Coroutine[Any, Any, Any], *, forever: bool = True
    ) -> object: ...


def link_base(settings: Settings) -> str:
    """Where a notice's link points: the configured console, else this control plane."""
    if settings.notifications.console_url:
        return settings.notifications.console_url.rstrip("/")
    return f"http://{settings.control.listen}"


class NoticeService:
    def __init__(
        self, settings: Settings, store: Store, *, node_id: str, started_at: datetime
    ) -> None:
        self.sender = NoticeSender(settings, store, node_id=node_id)
        self.notifier = Notifier(
            settings.notifications,
            store,
            node_id=node_id,
            link_base=link_base(settings),
            wake=self.sender.wake,
        )
        self.deadlines = DeadlineWatch(
            store,
            self.notifier,
            default_timezone=settings.scheduler.timezone,
            started_at=started_at,
        )
        self._unsubscribe: list[object] = []

    def start(self, events: Events, tasks: Tasks) -> None:
        """Subscribe to this node's lifecycle events and start the four loops."""
        events.subscribe(self.notifier)
        tasks.spawn("notice-decisions", self.notifier.run())
        tasks.spawn("notice-sweep", self.notifier.sweep_loop())
        tasks.spawn("notice-sender", self.sender.run())
        tasks.spawn("deadline-watch", self.deadlines.run())

    async def on_reload(self, settings: Settings) -> str:
        self.notifier.settings = settings.notifications
        self.notifier.link_base = link_base(settings)
        return await self.sender.on_reload(settings)
