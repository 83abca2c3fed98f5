"""Bad chat and webhook settings are refused naming the key, by `reporthubd check` (a real
process on a SQLite store), by the catalog (`apply`), and by POST /api/test-delivery (a real
port); the token never shows. Slack's test delivery calls auth.test on the stand-in."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from reporthubd import catalog
from reporthubd.control.app import build_app
from reporthubd.deliverers.base import ProducedFile
from reporthubd.engine.ledger import DeliveryLedger
from reporthubd.store.database import Store
from tests import servers
from tests.daemon_process import write_config
from tests.deliverers.chat_standins import SlackStandIn
from tests.deliverers.conftest import DeliverySpec, seed_report, settings_for
from tests.deliverers.test_control_routes import FakeRuntime

TOKEN = "xoxb-secret-token-4242"
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def _bad_specs() -> list[DeliverySpec]:
    return [
        DeliverySpec(method="slack", config={"channel": "C01"}),
        DeliverySpec(method="slack", config={"token": TOKEN}),
        DeliverySpec(method="teams", config={"preview_rows": 99}),
        DeliverySpec(method="google_chat", config={"url": "chat.example/hook"}),
        DeliverySpec(
            method="webhook",
            config={"url": "http://127.0.0.1:9/h", "signature": "standard", "secret": "plain"},
        ),
        DeliverySpec(method="webhook", config={"url": "http://127.0.0.1:9/h", "body": "{{ x"}),
        DeliverySpec(method="slack", config={"token": TOKEN, "channel": "C02"}),  # valid
        DeliverySpec(
            method="webhook",
            config={"url": "http://127.0.0.1:9/h", "signature": "both", "secret": WHSEC},
        ),  # valid
    ]


EXPECTED = [
    "delivery_config.token is required",
    "delivery_config.channel is required",
    "delivery_config.url is required",
    "delivery_config.preview_rows: must be 0 to 20",
    "delivery_config.url: must start with https://",
    "Standard Webhooks signatures need a secret of the form whsec_",
    "delivery_config.body: template syntax error",
]


async def test_check_names_each_bad_key_and_passes_the_good_rows(
    sqlite_store: Store, small_file: ProducedFile, tmp_path: Path
) -> None:
    settings = settings_for(sqlite_store)
    report = await seed_report(sqlite_store, settings, small_file, _bad_specs())
    config, _ = write_config(tmp_path, sqlite_store.settings.url)
    done = subprocess.run(
        [sys.executable, "-m", "reporthubd", "check", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    out = done.stdout
    assert done.returncode == 1, out + done.stderr
    for text in EXPECTED:
        assert text in out, (text, out)
    lines = [line for line in out.splitlines() if "report_deliveries id=" in line]
    assert len(lines) == 6, lines
    good = report.delivery_ids[6:]
    assert not [line for line in lines if any(f"id={i}:" in line for i in good)]
    assert TOKEN not in out + done.stderr and "plain" not in out


CATALOG = """
[[datasources]]
name = "warehouse"
type = "sqlite"
connection_config = {{ path = "/tmp/x.db" }}

[[reports]]
name = "daily"
datasource = "warehouse"
query = "SELECT 1"
output_format = "csv"

[[reports.deliveries]]
name = "to-chat"
method = "{method}"
config = {config}
"""


@pytest.mark.parametrize(
    ("method", "config", "message"),
    [
        ("slack", '{ channel = "C01" }', "config.token is required"),
        ("teams", '{ title = "x" }', "config.url is required"),
        (
            "webhook",
            '{ url = "https://h.example/", body = "{% if %}" }',
            "config.body: template syntax error",
        ),
    ],
)
def test_apply_refuses_a_chat_target_without_its_token(
    method: str, config: str, message: str
) -> None:
    with pytest.raises(catalog.CatalogError) as caught:
        catalog.parse(CATALOG.format(method=method, config=config))
    [problem] = caught.value.problems
    assert problem.where == "reports[0].deliveries[0]"
    assert message in str(problem)


def test_apply_takes_good_chat_targets() -> None:
    text = CATALOG.format(method="slack", config=f'{{ token = "{TOKEN}", channel = "C01" }}')
    parsed = catalog.parse(text)
    assert parsed.reports[0].deliveries[0].method.value == "slack"


@pytest.fixture
async def api(sqlite_store: Store) -> AsyncIterator[str]:
    settings = settings_for(sqlite_store)
    runtime = FakeRuntime(
        store=sqlite_store,
        settings=settings,
        deliveries=DeliveryLedger(settings, sqlite_store, node_id="control-test"),
    )
    runner = web.AppRunner(build_app(runtime, max_body_bytes=1 << 20), access_log=None)
    await runner.setup()
    port = servers.free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def _test_delivery(base: str, delivery_id: int) -> tuple[int, dict[str, Any]]:
    url = f"{base}/api/test-delivery/{delivery_id}"
    async with aiohttp.ClientSession() as http, http.post(url) as answer:
        return answer.status, await answer.json()


async def test_the_api_answers_422_naming_the_key_and_tests_slack_with_auth_test(
    api: str, sqlite_store: Store, small_file: ProducedFile
) -> None:
    slack = SlackStandIn(token=TOKEN)
    await slack.start()
    try:
        specs = [
            DeliverySpec(method="slack", config={"channel": "C01", "base_url": slack.base_url}),
            DeliverySpec(
                method="slack",
                config={"token": TOKEN, "channel": "C01", "base_url": slack.base_url},
            ),
            DeliverySpec(
                method="slack",
                config={"token": "xoxb-wrong-1234", "channel": "C01", "base_url": slack.base_url},
            ),
        ]
        settings = settings_for(sqlite_store)
        report = await seed_report(sqlite_store, settings, small_file, specs)
        missing, good, wrong = report.delivery_ids

        status, answer = await _test_delivery(api, missing)
        assert status == 422 and answer["status"] == "error"
        assert "delivery_config.token is required" in answer["error"]

        status, answer = await _test_delivery(api, good)
        assert status == 200 and answer["data"]["ok"] is True, answer
        status, answer = await _test_delivery(api, wrong)
        assert status == 200 and answer["data"]["ok"] is False
        assert "invalid_auth" in answer["data"]["error"]
        assert [c.method for c in slack.calls] == ["auth.test", "auth.test"]
        assert not slack.messages
        assert TOKEN not in str(answer) and "xoxb-wrong-1234" not in str(answer)
    finally:
        await slack.stop()


async def test_export_masks_a_teams_webhook_url_and_apply_keeps_it(sqlite_store: Store) -> None:
    from reporthubd.store import catalog as store_catalog

    url = "https://prod.example/workflows/abc/invoke?api-version=1&sig=SIG-secret-123"
    text = CATALOG.format(method="teams", config=f'{{ url = "{url}", preview_rows = 3 }}')
    await store_catalog.apply(sqlite_store, catalog.parse(text))
    exported, errors = await store_catalog.export(sqlite_store)
    assert errors == []
    rendered = catalog.render(exported)
    assert "SIG-secret-123" not in rendered and 'url = "***"' in rendered
    assert (await store_catalog.apply(sqlite_store, catalog.parse(rendered))).empty
    again, _ = await store_catalog.export(sqlite_store)
    [delivery] = again.reports[0].deliveries
    assert delivery.config["preview_rows"] == 3
    stored = await _stored_config(sqlite_store)
    assert stored["url"] == url


async def _stored_config(store: Store) -> dict[str, Any]:
    import sqlalchemy as sa

    from reporthubd.store import schema

    async with store.engine.connect() as conn:
        value = await conn.scalar(sa.select(schema.deliveries.c.delivery_config))
    assert isinstance(value, dict)
    return value
