"""Exactly once needs the receiver (issue 17: a SIGKILL of the node sending a notice neither
loses it nor doubles it). A report fails; its rule sends `failed` to four delivery rows: a
Standard Webhooks receiver (real aiohttp server, verified with the `standardwebhooks`
library), the Slack stand-in (through `slack_sdk`), a Google Chat and a Teams webhook stand-in.

Each receiver takes the notice and holds its answer; the sending daemon is killed with SIGKILL
there, between the channel accepting the notice and the ledger's SENT. A second daemon on the
same MariaDB store takes the four notices over after their lease and sends them again, under
the same idempotency key (the ledger row's id: `notice:<id>:<delivery id>`). Then:

- webhook: two requests, one `webhook-id` (= `Idempotency-Key`), both signatures valid; the
  receiver processes one;
- Slack: one message carrying the key in its metadata; the resend found it in the channel's
  history and posted nothing;
- Google Chat: two posts with one `requestId`; one message;
- Teams: two cards. It has no way to deduplicate: the window docs/operators.md describes.

Every notice ends SENT on its second attempt, by the second node.
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import web
from standardwebhooks import Webhook

from reporthubd.store import schema
from reporthubd.store.database import Store
from tests.deliverers import peers
from tests.deliverers.chat_standins import ChatWebhookStandIn, SlackStandIn
from tests.engine.conftest import add_config, add_datasource
from tests.notify.helpers import add_failing_report, notice_rows, wait_for
from tests.reliability.conftest import Daemon
from tests.scheduler.nodes import mariadb_store

SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()
LEASE_SECONDS = 5.0
CHANNEL = "C0ONCALL"


class HoldingReceiver(peers.WebhookReceiver):
    """Verifies each request's Standard Webhooks signature, processes a `webhook-id` once,
    and holds its first answer until `release` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.held = 0
        self.verified = 0

    async def handle(self, request: web.Request) -> web.Response:
        hit = peers.Hit(headers=dict(request.headers), body=await request.read(), at=0.0)
        self.hits.append(hit)
        Webhook(SECRET).verify(hit.body, hit.headers)  # raises on a bad signature
        self.verified += 1
        key = hit.headers["webhook-id"]
        if key not in self.seen_keys:
            self.seen_keys.add(key)
            self.accepted.append(hit)
        if self.held == 0:
            self.held += 1
            await self.release.wait()  # the sender is killed here: the receiver has it
        return web.Response(status=200, text="ok")


@pytest.fixture
async def shared_store(tmp_path: Path) -> AsyncIterator[tuple[Store, str]]:
    async with mariadb_store(tmp_path) as found:
        yield found


async def _delivery(store: Store, config_id: int, method: str, config: dict[str, Any]) -> int:
    async with store.engine.begin() as conn:
        inserted = await conn.execute(
            sa.insert(schema.deliveries).values(
                config_id=config_id,
                name=f"oncall-{method}",
                method=method,
                delivery_config=config,
                max_retry=0,
            )
        )
    return int(inserted.inserted_primary_key[0])


def _daemon(tmp_path: Path, url: str, node: str) -> Daemon:
    (tmp_path / node).mkdir()
    return Daemon(
        tmp_path / node,
        store_url=url,
        scheduler={"node_id": node},
        notifications={
            "lease_seconds": LEASE_SECONDS,
            "poll_interval_seconds": 1.0,
            "retry_interval_seconds": 1.0,
            "default_rule": {},
        },
    )


async def test_a_notice_resent_after_a_kill_reaches_each_receiver_once_per_key(
    tmp_path: Path, shared_store: tuple[Store, str]
) -> None:
    store, url = shared_store
    hook, slack = HoldingReceiver(), SlackStandIn()
    gchat, teams = ChatWebhookStandIn(), ChatWebhookStandIn()
    slack.hold, gchat.hold, teams.hold = asyncio.Event(), asyncio.Event(), asyncio.Event()
    for server in (hook, slack, gchat, teams):
        await server.start()
    daemons: list[Daemon] = []
    try:
        source = await add_datasource(store, "sqlite", {"path": str(tmp_path / "ops.db")})
        ops = await add_config(store, source, "SELECT 1 AS n", name="oncall")
        targets = {
            "webhook": await _delivery(
                store, ops, "webhook", {"url": hook.url, "secret": SECRET, "signature": "standard"}
            ),
            "slack": await _delivery(
                store,
                ops,
                "slack",
                {"token": slack.token, "channel": CHANNEL, "base_url": slack.base_url},
            ),
            "google_chat": await _delivery(
                store,
                ops,
                "google_chat",
                {"url": gchat.url("/v1/spaces/AAAA/messages", "key=k&token=t")},
            ),
            "teams": await _delivery(store, ops, "teams", {"url": teams.url("/workflows/x")}),
        }
        rule = {"events": ["failed"], "notify": [f"delivery:{i}" for i in targets.values()]}
        config_id, _ = await add_failing_report(
            store, tmp_path / "data.db", notify={"rules": [rule]}
        )

        first = _daemon(tmp_path, url, "resend-a")
        daemons.append(first)
        await first.ready()
        run = await first.execute(config_id)
        await wait_for(
            lambda: hook.held and slack.held and gchat.held and teams.held,
            "the four notices taken by their receivers, answers held",
        )
        rows = await notice_rows(store)
        assert {(r.status, r.node_id, r.attempt) for r in rows} == {("SENDING", "resend-a", 1)}
        first.process.proc.send_signal(signal.SIGKILL)
        await asyncio.to_thread(first.process.proc.wait, 10)
        for held in (hook.release, slack.hold, gchat.hold, teams.hold):
            assert held is not None
            held.set()  # the answers go to a dead node
        slack.hold = gchat.hold = teams.hold = None

        second = _daemon(tmp_path, url, "resend-b")
        daemons.append(second)
        await second.ready()
        rows = await wait_for(lambda: _all_sent(store, 4), "the four notices SENT", timeout=90)
        assert {(r.node_id, r.attempt) for r in rows} == {("resend-b", 2)}, rows
        assert all(run in (r.message or "") for r in rows)
        ids = {r.target: r.id for r in rows}

        def key_of(method: str) -> str:
            return f"notice:{ids[f'delivery:{targets[method]}']}:{targets[method]}"

        # Webhook: the same key twice (both signed), processed once.
        key = key_of("webhook")
        assert [h.headers["webhook-id"] for h in hook.hits] == [key, key]
        assert [h.headers["Idempotency-Key"] for h in hook.hits] == [key, key]
        assert hook.verified == 2 and len(hook.accepted) == 1
        # Slack: one message with the key; the resend read the history and did not post.
        key = key_of("slack")
        assert slack.keys() == [key], slack.messages
        assert len(slack.calls_of("chat.postMessage")) == 1
        (history,) = slack.calls_of("conversations.history")
        assert history.params["channel"] == CHANNEL
        # Google Chat: two posts under one requestId, one message.
        assert gchat.posts == 2 and len(gchat.messages) == 1
        assert len(gchat.by_request_id) == 1
        # Teams cannot deduplicate: the card twice (docs/operators.md says so).
        assert teams.posts == 2 and len(teams.messages) == 2
        assert len(await notice_rows(store)) == 4
    finally:
        hook.release.set()
        for standin in (slack, gchat, teams):
            if standin.hold is not None:
                standin.hold.set()
        for daemon in daemons:
            await daemon.close()
        for server in (hook, slack, gchat, teams):
            await server.stop()


async def _all_sent(store: Store, count: int) -> list[Any] | None:
    rows = await notice_rows(store)
    return rows if len(rows) == count and all(r.status == "SENT" for r in rows) else None
