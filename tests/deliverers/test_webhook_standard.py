"""The webhook delivery's templated body (sandboxed Jinja, JSON-escaped values) and its Standard
Webhooks signature, received by the aiohttp receiver and verified there with the
`standardwebhooks` library (PyPI), which also rejects a tampered body."""

from __future__ import annotations

import base64
import json
import os

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from reporthubd import domain
from reporthubd.deliverers.base import ProducedFile
from reporthubd.store import delivery_logs
from reporthubd.store.database import Store
from tests.deliverers import peers
from tests.deliverers.conftest import DeliverySpec, seed_report, settings_for

DS = domain.DeliveryStatus
SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()


async def test_standard_webhooks_signature_verifies_and_a_tampered_body_is_rejected(
    sqlite_store: Store, small_file: ProducedFile, receiver: peers.WebhookReceiver
) -> None:
    spec = DeliverySpec(
        method="webhook", config={"url": receiver.url, "secret": SECRET, "signature": "standard"}
    )
    settings = settings_for(sqlite_store)
    report = await seed_report(sqlite_store, settings, small_file, [spec])
    result = await report.ledger.run(await report.job())
    assert result.delivered == 1

    [hit] = receiver.hits
    verified = Webhook(SECRET).verify(hit.body, hit.headers)
    assert verified["execution_id"] == report.execution_id
    assert hit.headers["webhook-id"] == f"{report.execution_id}:{report.delivery_ids[0]}"
    assert "X-Reporthub-Signature" not in hit.headers  # standard only

    tampered = hit.body.replace(b'"row_count": 3', b'"row_count": 4')
    assert tampered != hit.body
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(tampered, hit.headers)
    other = "whsec_" + base64.b64encode(os.urandom(32)).decode()
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(hit.body, hit.headers)
    [row] = await delivery_logs.logs_for_execution(sqlite_store, report.execution_id)
    assert SECRET not in str(row)


async def test_both_schemes_and_the_same_webhook_id_on_a_retry(
    sqlite_store: Store, small_file: ProducedFile, receiver: peers.WebhookReceiver
) -> None:
    receiver.answers.append((503, {"Retry-After": "1"}))
    spec = DeliverySpec(
        method="webhook", config={"url": receiver.url, "secret": SECRET, "signature": "both"}
    )
    settings = settings_for(sqlite_store)
    report = await seed_report(sqlite_store, settings, small_file, [spec])
    ledger = report.ledger
    assert (await ledger.run(await report.job())).pending == 1

    async def retried() -> bool:
        await ledger.process_due()
        return len(receiver.hits) == 2

    await peers.wait_until(retried, timeout=30, interval=0.2)
    first, second = receiver.hits
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    for hit in (first, second):
        Webhook(SECRET).verify(hit.body, hit.headers)
        assert hit.signature_valid(SECRET)  # today's X-Reporthub-Signature too
    rows = await delivery_logs.logs_for_execution(sqlite_store, report.execution_id)
    assert [r.status for r in rows] == [DS.RETRYING, DS.SUCCESS]


async def test_multipart_body_signed_the_standard_way_verifies(
    sqlite_store: Store, small_file: ProducedFile, receiver: peers.WebhookReceiver
) -> None:
    spec = DeliverySpec(
        method="webhook",
        config={"url": receiver.url, "mode": "multipart", "secret": SECRET, "signature": "both"},
    )
    settings = settings_for(sqlite_store)
    report = await seed_report(sqlite_store, settings, small_file, [spec])
    assert (await report.ledger.run(await report.job())).delivered == 1
    [hit] = receiver.hits
    Webhook(SECRET).verify(hit.body, hit.headers, json_parse=False)
    assert hit.multipart_file()[1] == small_file.path.read_bytes()


async def test_templated_body_escapes_every_value_as_json(
    sqlite_store: Store, small_file: ProducedFile, receiver: peers.WebhookReceiver
) -> None:
    hostile = 'no"rth\\", "admin": true, "x": "\n}'
    body = (
        '{"text": "{{ report_name }}: {{ row_count }} rows for {{ parameters.region }}",'
        ' "region": "{{ region }}", "rows": {{ row_count }}, "parameters": {{ parameters }},'
        ' "file": "{{ file.name }}", "sha256": "{{ file.sha256 }}", "link": {{ download_url }},'
        ' "when": "{{ scheduled_for | fmt(\'%Y\') }}", "id": {{ metadata.execution_id | tojson }}}'
    )
    spec = DeliverySpec(
        method="webhook",
        config={"url": receiver.url, "body": body, "secret": SECRET, "signature": "standard"},
    )
    settings = settings_for(sqlite_store)
    report = await seed_report(
        sqlite_store, settings, small_file, [spec], parameters={"region": hostile}
    )
    job = await report.job()
    assert (await report.ledger.run(job)).delivered == 1

    [hit] = receiver.hits
    document = Webhook(SECRET).verify(hit.body, hit.headers)
    assert hit.headers["Content-Type"] == "application/json"
    assert document == {
        "text": f"{job.config.name}: 3 rows for {hostile}",
        "region": hostile,
        "rows": 3,
        "parameters": {"region": hostile},
        "file": small_file.name,
        "sha256": small_file.sha256,
        "link": None,
        "when": document["when"],
        "id": report.execution_id,
    }
    assert "admin" not in document and len(document["when"]) == 4


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('{"a": "{{ nope }}"}', "body: template failed"),
        ('{"a": "{{ report_name.__class__.__mro__ }}"}', "body: template failed"),
        ('{"a": {{ report_name }}}', "body: the rendered body is not JSON"),
        ('{"a": "{% for %}"}', "body: template failed"),
    ],
)
async def test_a_bad_body_fails_for_good_naming_it(
    sqlite_store: Store,
    small_file: ProducedFile,
    receiver: peers.WebhookReceiver,
    body: str,
    expected: str,
) -> None:
    spec = DeliverySpec(method="webhook", config={"url": receiver.url, "body": body})
    settings = settings_for(sqlite_store)
    report = await seed_report(sqlite_store, settings, small_file, [spec])
    assert (await report.ledger.run(await report.job())).failed == 1
    [row] = await delivery_logs.logs_for_execution(sqlite_store, report.execution_id)
    assert row.status is DS.FAILED and (row.error_message or "").startswith(expected), row
    assert not receiver.hits


async def test_standard_signature_needs_a_whsec_secret(
    sqlite_store: Store, small_file: ProducedFile, receiver: peers.WebhookReceiver
) -> None:
    specs = [
        DeliverySpec(
            method="webhook",
            config={"url": receiver.url, "secret": "plain-secret", "signature": "standard"},
        ),
        DeliverySpec(method="webhook", config={"url": receiver.url, "signature": "both"}),
        DeliverySpec(method="webhook", config={"url": receiver.url, "signature": "hmac"}),
    ]
    settings = settings_for(sqlite_store)
    report = await seed_report(sqlite_store, settings, small_file, specs)
    assert (await report.ledger.run(await report.job())).failed == 3
    rows = await delivery_logs.logs_for_execution(sqlite_store, report.execution_id)
    errors = [r.error_message or "" for r in sorted(rows, key=lambda r: r.delivery_id)]
    assert "whsec_" in errors[0] and errors[0].startswith("delivery_config.secret")
    assert errors[1].startswith("delivery_config.secret") and "required" in errors[1]
    assert errors[2].startswith("delivery_config.signature")
    assert "plain-secret" not in json.dumps(errors)
    assert not receiver.hits
