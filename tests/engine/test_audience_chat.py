"""Chat targets for the audiences of a data-driven run (engine/audience_targets.py), through the
engine and the real delivery ledger, against the chat stand-ins of TESTING.md (no Slack, Teams
or Google Chat is reachable from here: tests/deliverers/chat_standins.py): each driver row names
its own Slack channel, Teams webhook and Google Chat webhook in its recipients column, and each
audience's file and preview go there, and only there. The Teams cards pass Microsoft's Adaptive
Cards parser and the Google Chat messages the Chat API's schema; no webhook's credential (its
URL's query) shows in the dry run, the API's audiences or the ledger. Bad targets fail the
parent naming the row, the key and the column, before anything is sent."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from reporthubd.engine import Engine, audiences, dryrun
from reporthubd.engine.ledger import DeliveryLedger
from reporthubd.store import audiences as audience_rows
from reporthubd.store import schema
from reporthubd.store.database import Store
from tests.deliverers.chat_standins import (
    ChatWebhookStandIn,
    SlackStandIn,
    adaptive_card_problems,
    google_chat_problems,
)
from tests.engine.conftest import add_config, add_datasource, engine_settings, run_to_end
from tests.engine.test_audiences import add_driver

BRANCHES = 6


@pytest.fixture
async def slack() -> AsyncIterator[SlackStandIn]:
    stand_in = SlackStandIn()
    await stand_in.start()
    yield stand_in
    await stand_in.stop()


@pytest.fixture
async def teams() -> AsyncIterator[ChatWebhookStandIn]:
    stand_in = ChatWebhookStandIn()
    await stand_in.start()
    yield stand_in
    await stand_in.stop()


@pytest.fixture
async def gchat() -> AsyncIterator[ChatWebhookStandIn]:
    stand_in = ChatWebhookStandIn()
    await stand_in.start()
    yield stand_in
    await stand_in.stop()


@pytest.fixture
async def engine(tmp_path: Path, engine_store: Store) -> AsyncIterator[Engine]:
    settings = engine_settings(tmp_path, max_concurrent_executions=3)
    ledger = DeliveryLedger(settings, engine_store, node_id="test-node")
    eng = Engine(settings, engine_store, node_id="test-node", deliveries=ledger)
    await eng.start()
    yield eng
    await eng.stop()


def _targets(code: str, teams: ChatWebhookStandIn, gchat: ChatWebhookStandIn) -> str:
    return ", ".join(
        [
            f"slack:C{code}CHAN",
            "teams:" + teams.url(f"/workflows/{code}", f"sig=sig-{code}"),
            "google_chat:" + gchat.url(f"/v1/spaces/S{code}/messages", f"key=k&token=t-{code}"),
        ]
    )


async def _report(
    store: Store,
    tmp_path: Path,
    slack: SlackStandIn,
    teams: ChatWebhookStandIn,
    gchat: ChatWebhookStandIn,
    recipients: dict[str, str],
) -> int:
    data = tmp_path / "data.db"
    with sqlite3.connect(data) as conn:
        conn.execute("CREATE TABLE branches (code TEXT, targets TEXT)")
        conn.execute("CREATE TABLE sales (branch TEXT, amount INTEGER)")
        conn.executemany("INSERT INTO branches VALUES (?, ?)", list(recipients.items()))
        conn.executemany(
            "INSERT INTO sales VALUES (?, ?)",
            [(code, n * 100 + i) for n, code in enumerate(recipients) for i in (1, 2)],
        )
    conn.close()
    ds = await add_datasource(store, "sqlite", {"path": str(data)})
    config = await add_config(
        store,
        ds,
        "SELECT branch, amount FROM sales WHERE branch = :branch ORDER BY amount",
        name="Branch sales",
        file_name_template="sales_{{ branch }}",
    )
    await add_driver(
        store,
        config,
        ds,
        "SELECT code AS branch, targets AS recipients FROM branches ORDER BY code",
        key_column="branch",
    )
    # Each delivery's own channel or URL is a default the audiences replace: were it used,
    # the stand-ins would see it.
    chat: list[tuple[str, dict[str, Any]]] = [
        ("slack", {"token": slack.token, "channel": "CDEFAULT", "base_url": slack.base_url}),
        ("teams", {"url": teams.url("/workflows/default", "sig=default")}),
        ("google_chat", {"url": gchat.url("/v1/spaces/DEFAULT/messages", "key=k&token=d")}),
    ]
    async with store.engine.begin() as conn:
        for method, delivery_config in chat:
            await conn.execute(
                sa.insert(schema.deliveries).values(
                    config_id=config, name=method, method=method, delivery_config=delivery_config
                )
            )
    return config


async def test_each_audience_gets_its_own_channels(
    engine: Engine,
    engine_store: Store,
    tmp_path: Path,
    slack: SlackStandIn,
    teams: ChatWebhookStandIn,
    gchat: ChatWebhookStandIn,
) -> None:
    codes = [f"B{i}" for i in range(BRANCHES)]
    config = await _report(
        engine_store,
        tmp_path,
        slack,
        teams,
        gchat,
        {code: _targets(code, teams, gchat) for code in codes},
    )
    listing = await dryrun.dry_run(engine_store, engine.settings, config)
    shown = str(listing.as_json())
    assert "sig-" not in shown and "t-B" not in shown  # no webhook credential
    first = listing.audiences[0]
    assert first["targets"] == [
        "slack:CB0CHAN",
        f"teams:http://127.0.0.1:{teams.port}/workflows/B0",
        f"google_chat:http://127.0.0.1:{gchat.port}/v1/spaces/SB0/messages",
    ]
    assert not slack.calls and not teams.messages and not gchat.messages  # nothing sent

    parent = await run_to_end(engine, config)

    assert parent.status.value == "COMPLETED", parent.error_message
    burst = await audience_rows.get_burst(engine_store, parent.id)
    assert burst is not None and (burst.delivered, burst.failed) == (BRANCHES, 0)
    # Slack: one message and one file per audience, in its own channel, with its rows only.
    by_channel = {m["channel"]: m for m in slack.messages}
    assert sorted(by_channel) == sorted(f"C{code}CHAN" for code in codes)
    for upload in slack.uploads.values():
        code = upload.channel.removeprefix("C").removesuffix("CHAN") if upload.channel else ""
        assert upload.completed and upload.filename == f"sales_{code}.csv"
        lines = upload.data.decode().splitlines()
        assert lines[0] == "branch,amount" and {line.split(",")[0] for line in lines[1:]} == {code}
    assert len(slack.uploads) == BRANCHES
    # Teams and Google Chat: one card per audience, on its own webhook, previewing its rows.
    assert sorted(q["sig"] for q in teams.queries) == sorted(f"sig-{c}" for c in codes)
    assert sorted(q["token"] for q in gchat.queries) == sorted(f"t-{c}" for c in codes)
    for query, message in zip(teams.queries, teams.messages, strict=True):
        code = query["sig"].removeprefix("sig-")
        text = str(message)
        assert f"sales_{code}.csv" in text
        assert all(f"sales_{other}.csv" not in text for other in codes if other != code)
    for query, message in zip(gchat.queries, gchat.messages, strict=True):
        code = query["token"].removeprefix("t-")
        preview = message["cardsV2"][0]["card"]["sections"][1]["widgets"][0]["textParagraph"]
        rows = preview["text"].split("<br>")[1:]
        assert rows and {row.split(" | ")[0] for row in rows} == {code}
    assert google_chat_problems(gchat.messages[0]) == []
    assert adaptive_card_problems(teams.messages[0])["errors"] == []
    # The ledger's targets and the API's audiences carry no webhook credential.
    async with engine_store.engine.connect() as conn:
        targets = (await conn.execute(sa.select(schema.delivery_logs.c.target))).scalars().all()
    assert len(targets) == 3 * BRANCHES
    assert not [t for t in targets if "sig-" in (t or "") or "token" in (t or "")]


@pytest.mark.parametrize(
    ("recipients", "expected"),
    [
        (
            "slack:CB1CHAN, teams:https://example.invalid/hook",
            "driver row 2 (audience 'B1') names no google_chat target in column 'recipients'",
        ),
        (
            "slack:, teams:https://a.invalid/h, google_chat:https://b.invalid/h",
            "driver row 2 (audience 'B1'), column 'recipients': 'slack:': a slack target is a "
            "channel ID",
        ),
        (
            "slack:C1, teams:not-a-url, google_chat:https://b.invalid/h",
            "column 'recipients': 'teams:not-a-url': a teams target is a webhook URL",
        ),
        (
            "slack:C1, slack:C2, teams:https://a.invalid/h, google_chat:https://b.invalid/h",
            "column 'recipients': more than one slack target (one per chat method)",
        ),
        (
            "sms:+4912345, slack:C1, teams:https://a.invalid/h, google_chat:https://b.invalid/h",
            "column 'recipients': 'sms:+4912345' is not an e-mail address nor a chat target",
        ),
    ],
)
async def test_a_bad_chat_target_fails_the_parent_naming_it(
    engine: Engine,
    engine_store: Store,
    tmp_path: Path,
    slack: SlackStandIn,
    teams: ChatWebhookStandIn,
    gchat: ChatWebhookStandIn,
    recipients: str,
    expected: str,
) -> None:
    good = _targets("B0", teams, gchat)
    config = await _report(
        engine_store, tmp_path, slack, teams, gchat, {"B0": good, "B1": recipients}
    )
    with pytest.raises(audiences.AudienceProblem) as refused:
        await dryrun.dry_run(engine_store, engine.settings, config)
    assert expected in str(refused.value)

    parent = await run_to_end(engine, config)

    assert parent.status.value == "FAILED"
    assert expected in (parent.error_message or "")
    assert not slack.calls and not teams.messages and not gchat.messages
