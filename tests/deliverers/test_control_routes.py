"""POST /api/test-delivery/{id} and POST /api/execution/{id}/redeliver over a real port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from reporthubd import domain
from reporthubd.config import Settings
from reporthubd.control.app import build_app
from reporthubd.deliverers.base import ProducedFile
from reporthubd.engine.ledger import DeliveryLedger
from reporthubd.store.database import Store
from tests import servers
from tests.deliverers import peers
from tests.deliverers.conftest import DeliverySpec, seed_report, settings_for

ES = domain.ExecutionStatus


@dataclass
class FakeRuntime:
    """The daemon as the control plane sees it; the ledger is a real one."""

    store: Store
    settings: Settings
    deliveries: DeliveryLedger
    node_id: str = "control-test"
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    draining: bool = False
    engine: Any = None
    scheduler: Any = None


@pytest.fixture
async def api(sqlite_store: Store) -> AsyncIterator[tuple[str, FakeRuntime]]:
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
    yield f"http://127.0.0.1:{port}", runtime
    await runner.cleanup()


async def _post(url: str) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.post(url) as answer:
        return answer.status, await answer.json()


async def test_test_delivery_checks_each_method_without_sending_a_report(
    api: tuple[str, FakeRuntime],
    small_file: ProducedFile,
    smtp_server: peers.SMTPServer,
    sshd: peers.SSHServer,
    s3_server: peers.S3Server,
    bucket: str,
    receiver: peers.WebhookReceiver,
    tmp_path: Path,
) -> None:
    base, runtime = api
    sftp = {
        "host": "127.0.0.1",
        "port": sshd.port,
        "username": sshd.user,
        "private_key_file": str(sshd.client_key_path),
    }
    specs = [
        DeliverySpec(
            method="email",
            config={"smtp": smtp_server.smtp_config()},
            recipients=[("to", "a@example.com")],
        ),
        DeliverySpec(method="sftp", config=sftp | {"host_key": sshd.host_key}),
        DeliverySpec(method="s3", config=s3_server.delivery_config(bucket)),
        DeliverySpec(method="webhook", config={"url": receiver.url, "secret": "hook-secret"}),
        DeliverySpec(method="file_share", config={"path": str(tmp_path)}),
        # Failing ones: wrong password, wrong host key, unknown bucket, 403, missing share.
        DeliverySpec(method="email", config={"smtp": smtp_server.smtp_config(password="not-it")}),
        DeliverySpec(method="sftp", config=sftp | {"host_key": sshd.other_host_key}),
        DeliverySpec(method="s3", config=s3_server.delivery_config("no-such-bucket")),
        DeliverySpec(method="webhook", config={"url": receiver.url}),
        DeliverySpec(method="file_share", config={"path": str(tmp_path / "unmounted")}),
    ]
    report = await seed_report(runtime.store, runtime.settings, small_file, specs)
    receiver.answers += [(200, {}), (403, {})]
    answers = [await _post(f"{base}/api/test-delivery/{i}") for i in report.delivery_ids]
    assert [status for status, _ in answers] == [200] * 10
    oks = [body["data"]["ok"] for _, body in answers]
    assert oks == [True] * 5 + [False] * 5, answers
    errors = [body["data"]["error"] for _, body in answers[5:]]
    assert "authentication refused" in errors[0]
    assert "host key not trusted" in errors[1]
    assert "NoSuchBucket" in errors[2] or "404" in errors[2]
    assert "HTTP 403" in errors[3]
    assert "not a directory" in errors[4]
    assert "not-it" not in str(answers)
    assert smtp_server.mailbox.messages == []  # a test sends no mail
    ping = receiver.hits[0]
    assert ping.json["event"] == "ping" and ping.signature_valid("hook-secret")

    status, body = await _post(f"{base}/api/test-delivery/999999")
    assert status == 404 and body["status"] == "error"


async def test_redeliver_route(
    api: tuple[str, FakeRuntime], small_file: ProducedFile, receiver: peers.WebhookReceiver
) -> None:
    base, runtime = api
    status, body = await _post(f"{base}/api/execution/no-such-execution/redeliver")
    assert status == 404 and body["status"] == "error"

    spec = DeliverySpec(method="webhook", config={"url": receiver.url})
    running = await seed_report(runtime.store, runtime.settings, small_file, [spec])
    status, body = await _post(f"{base}/api/execution/{running.execution_id}/redeliver")
    assert status == 409 and "RUNNING" in body["error"]

    failed = await seed_report(
        runtime.store, runtime.settings, small_file, [spec], status=ES.FAILED
    )
    status, body = await _post(f"{base}/api/execution/{failed.execution_id}/redeliver")
    assert status == 200, body
    assert body["data"]["redelivered"] == failed.delivery_ids
    assert body["data"]["status"] == "COMPLETED"
    assert len(receiver.accepted) == 1

    status, body = await _post(f"{base}/api/execution/{failed.execution_id}/redeliver")
    assert status == 200 and body["data"]["redelivered"] == []
    assert body["message"] == "nothing failed: nothing to redeliver"
    assert len(receiver.hits) == 1
