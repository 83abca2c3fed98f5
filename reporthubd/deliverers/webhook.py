"""Webhook delivery over HTTP(S) with aiohttp.

delivery_config keys:
- `url` (required), `method` (POST default, or PUT), `headers` (object; a value may be a secret
  reference {"env": ...} / {"file": ...}).
- `mode`: `json` (default) sends the execution's metadata (and `download_url`, the presigned link
  of an S3 delivery of the same execution when there is one); `multipart` sends the file itself
  as the `file` part beside a `metadata` JSON part.
- `secret`: when set, every request is signed (below). `timeout_seconds` (default 60) bounds
  connecting and each read; `verify_tls` (default true).
- `body` (json mode): a Jinja template of the request body, rendered in the shared sandbox with
  every value JSON-escaped (json_body.py), e.g. `{"text": "{{ report_name }}: {{ row_count }}
  rows", "link": "{{ download_url }}"}`; `content_type` (default `application/json`; a JSON type
  must render to valid JSON).
- `signature`: `reporthub` (the default: the scheme below), `standard` (the Standard Webhooks
  headers `webhook-id`, `webhook-timestamp`, `webhook-signature`, standard_webhooks.py; the
  `secret` must be `whsec_<base64>`) or `both`.

Every request carries `Idempotency-Key: <execution_id>:<delivery_id>` and the same value in
`webhook-id` (the Standard Webhooks header, signed or not): the same on every retry, a run that
recovers a lost one after a crash sends the lost run's execution id, and a notice sends
`notice:<ledger id>:<delivery_id>`, so a receiver that already has it drops the repeat (the
only way to exactly once across a kill between the receiver's answer and the ledger's
record); `X-Reporthub-Attempt` and
`X-Reporthub-Event` (`report.delivered`, `report.notice` for a notice, whose document carries a
`notice` object and which ignores `body`, or `ping` from a test).

Classification: 2xx delivered; 429 and 5xx retried (honouring `Retry-After`, seconds or an HTTP
date); connection errors and timeouts retried; any other status (redirects included, which are
not followed) fails for good with the status and the start of the answer.

Verifying the signature (receiver side)
---------------------------------------
Headers: `X-Reporthub-Timestamp: <unix seconds>` and
`X-Reporthub-Signature: t=<unix seconds>,v1=<hex>`, where
`hex = HMAC-SHA256(key=secret, msg=b"<timestamp>." + raw_body)` over the exact bytes of the body
as received (for multipart, the whole multipart body). A receiver:

    import hashlib, hmac, time
    def verify(secret: bytes, headers, body: bytes, tolerance=300) -> bool:
        fields = dict(p.split("=", 1) for p in headers["X-Reporthub-Signature"].split(","))
        timestamp = fields["t"]
        if abs(time.time() - int(timestamp)) > tolerance:
            return False                      # too old: a replay
        expected = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, fields["v1"])

and drops a request whose `Idempotency-Key` it has already processed.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp

from reporthubd import secrets
from reporthubd.deliverers import json_body, standard_webhooks, templating
from reporthubd.deliverers.base import Attempt, AttemptResult, Deliverer, DeliveryError
from reporthubd.deliverers.common import (
    CHUNK,
    Options,
    describe,
    file_chunks,
    ok,
    permanent,
    retryable,
    url_target,
)

SIGNATURE_HEADER = "X-Reporthub-Signature"
SIGNATURE_SCHEMES = frozenset({"reporthub", "standard", "both"})
TIMESTAMP_HEADER = "X-Reporthub-Timestamp"


def sign(secret: str, timestamp: str, body_parts: list[bytes]) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b".", hashlib.sha256)
    for part in body_parts:
        mac.update(part)
    return mac.hexdigest()


MAX_RETRY_AFTER_SECONDS = 10**9


def retry_after(value: str | None, now: datetime | None = None) -> timedelta | None:
    """Parse a Retry-After header: delay seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        # A receiver's number is bounded before it meets timedelta (the ledger caps it further).
        return timedelta(seconds=min(int(value), MAX_RETRY_AFTER_SECONDS))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(timedelta(0), when - (now or datetime.now(UTC)))


def metadata(attempt: Attempt, event: str = "report.delivered") -> dict[str, Any]:
    job = attempt.job
    variables = job.variables
    scheduled = variables.get("scheduled_for")
    document: dict[str, Any] = {
        "event": event,
        "execution_id": job.execution_id,
        "delivery_id": attempt.delivery.id,
        "config_id": job.config.id,
        "report_name": job.config.name,
        "scheduled_for": scheduled.isoformat() if isinstance(scheduled, datetime) else None,
        "parameters": variables.get("parameters", {}),
        "attempt": attempt.number,
    }
    if job.file is not None:
        document["row_count"] = job.file.row_count
        document["file"] = {
            "name": job.file.name,
            "size": job.file.size,
            "sha256": job.file.sha256,
            "media_type": job.file.media_type,
        }
    if variables.get("download_url"):
        document["download_url"] = variables["download_url"]
    if isinstance(variables.get("notice_text"), str):  # a notice (notify/sender.py)
        document["event"] = "report.notice"
        document["notice"] = {
            key: variables.get(f"notice_{key}") for key in ("id", "event", "subject", "text")
        } | {"incident_key": variables.get("incident_key"), "run_url": variables.get("run_url")}
    return document


class WebhookDeliverer(Deliverer):
    def _request_settings(self) -> tuple[str, str, dict[str, str], str | None, float, bool, str]:
        options = Options(self.delivery.delivery_config, "delivery_config")
        url: str = options.required("url")
        if not url.startswith(("http://", "https://")):
            raise DeliveryError("delivery_config.url: must start with http:// or https://")
        method = (options.text("method", "POST") or "POST").upper()
        if method not in {"POST", "PUT", "PATCH"}:
            raise DeliveryError("delivery_config.method: must be POST, PUT or PATCH")
        headers: dict[str, str] = {}
        for name, value in options.mapping("headers").items():
            try:
                headers[str(name)] = secrets.resolve(value, where=f"headers.{name}")
            except secrets.SecretError as exc:
                raise DeliveryError(str(exc)) from None
        mode = options.text("mode", "json") or "json"
        if mode not in {"json", "multipart"}:
            raise DeliveryError("delivery_config.mode: must be json or multipart")
        return (
            url,
            method,
            headers,
            options.secret("secret"),
            options.number("timeout_seconds", 60.0),
            options.flag("verify_tls", True),
            mode,
        )

    def _body_settings(
        self, mode: str, secret: str | None, *, notice: bool = False
    ) -> tuple[str | None, str, str]:
        """The body template, its content type and the signature scheme, checked. A notice
        has no body template: the notice sender sets `body` to the notice's text (as for
        email), and the webhook sends its JSON document, which carries the notice, instead."""
        options = Options(self.delivery.delivery_config, "delivery_config")
        body = None if notice else options.text("body")
        if body is not None and mode != "json":
            raise DeliveryError("delivery_config.body: only with mode json")
        content_type = options.text("content_type", "application/json") or "application/json"
        scheme = options.text("signature", "reporthub") or "reporthub"
        if scheme not in SIGNATURE_SCHEMES:
            raise DeliveryError("delivery_config.signature: must be reporthub, standard or both")
        if scheme != "reporthub":
            if secret is None:
                raise DeliveryError(f"delivery_config.secret is required for signature {scheme!r}")
            standard_webhooks.key(secret)  # a malformed whsec_ secret fails here, naming it
        return body, content_type, scheme

    async def deliver(self, attempt: Attempt) -> AttemptResult:
        try:
            url, method, headers, secret, timeout, verify, mode = self._request_settings()
            notice = isinstance(attempt.job.variables.get("notice_text"), str)
            template, body_type, scheme = self._body_settings(mode, secret, notice=notice)
        except DeliveryError as exc:
            return permanent(
                url_target(str(self.delivery.delivery_config.get("url", ""))), str(exc)
            )
        document = metadata(attempt)
        message_id = attempt.idempotency_key
        own = scheme in {"reporthub", "both"}
        standard = secret if scheme in {"standard", "both"} else None
        if mode == "multipart":
            if attempt.job.file is None:
                return permanent(url_target(url), "no file to send in multipart mode")
            head, tail, content_type = _multipart_frame(attempt, document)
            size = len(head) + attempt.job.file.size + len(tail)

            async def body() -> AsyncIterator[bytes]:
                yield head
                async for chunk in file_chunks(attempt.job.file.path):  # type: ignore[union-attr]
                    yield chunk
                yield tail

            signature = (
                await asyncio.to_thread(_sign_file, secret, head, attempt, tail)
                if secret and own
                else None
            )
            payload: Any = body()
            headers = {**headers, "Content-Type": content_type, "Content-Length": str(size)}
            if standard:
                path = attempt.job.file.path
                headers |= await asyncio.to_thread(
                    standard_webhooks.headers,
                    standard,
                    message_id,
                    standard_webhooks.file_parts(head, path, tail),
                )
        else:
            if template is not None:
                variables = templating.attempt_variables(attempt) | {
                    "metadata": document,
                    "file": document.get("file"),
                    "download_url": document.get("download_url"),
                }
                try:
                    raw = json_body.render(template, variables, json_type=_is_json(body_type))
                except DeliveryError as exc:
                    return permanent(url_target(url), str(exc))
            else:
                raw = json.dumps(document, default=str).encode()
                body_type = "application/json"
            signature = _signed(secret, [raw]) if secret and own else None
            payload = raw
            headers = {**headers, "Content-Type": body_type}
            if standard:
                headers |= standard_webhooks.headers(standard, message_id, [raw])
        return await self._send(
            url,
            method,
            headers,
            payload,
            signature,
            timeout,
            verify,
            attempt,
            event=str(document["event"]),
        )

    async def _send(
        self,
        url: str,
        method: str,
        headers: Mapping[str, str],
        payload: Any,
        signature: tuple[str, str] | None,
        limit: float,
        verify: bool,
        attempt: Attempt | None,
        *,
        event: str,
    ) -> AttemptResult:
        target = url_target(url)
        timeout = limit
        headers = dict(headers)
        headers["X-Reporthub-Event"] = event
        if attempt is not None:
            # One key, in both the IETF draft's header and the Standard Webhooks one (also
            # when the request is not signed that way), so any receiver can drop a repeat.
            headers["Idempotency-Key"] = attempt.idempotency_key
            headers.setdefault(standard_webhooks.ID_HEADER, attempt.idempotency_key)
            headers["X-Reporthub-Attempt"] = str(attempt.number)
        if signature is not None:
            timestamp, digest = signature
            headers[TIMESTAMP_HEADER] = timestamp
            headers[SIGNATURE_HEADER] = f"t={timestamp},v1={digest}"
        client_timeout = aiohttp.ClientTimeout(
            total=None, connect=timeout, sock_connect=timeout, sock_read=timeout
        )
        ssl_option: ssl.SSLContext | bool = verify
        try:
            async with (
                aiohttp.ClientSession(timeout=client_timeout) as session,
                session.request(
                    method,
                    url,
                    data=payload,
                    headers=headers,
                    allow_redirects=False,
                    ssl=ssl_option,
                ) as response,
            ):
                text = (await response.content.read(500)).decode("utf-8", "replace")
                status = response.status
                after = retry_after(response.headers.get("Retry-After"))
        except TimeoutError as exc:
            return retryable(target, f"timed out after {timeout:g}s ({describe(exc)})")
        except aiohttp.ClientSSLError as exc:
            return permanent(target, f"TLS verification failed: {describe(exc)}")
        except aiohttp.ClientError as exc:
            return retryable(target, f"connection failed: {describe(exc)}")
        except OSError as exc:
            return retryable(target, f"connection failed: {describe(exc)}")
        snippet = " ".join(text.split())[:200]
        if 200 <= status < 300:
            return ok(target, status=status)
        reason = f"HTTP {status}" + (f": {snippet}" if snippet else "")
        if status == 429 or status >= 500:
            return retryable(target, reason, retry_after=after, status=status)
        if 300 <= status < 400:
            reason += " (redirects are not followed: configure the final URL)"
        return permanent(target, reason, status=status)

    async def test(self) -> AttemptResult:
        try:
            url, method, headers, secret, timeout, verify, mode = self._request_settings()
            _, _, scheme = self._body_settings(mode, secret)
        except DeliveryError as exc:
            return permanent(
                url_target(str(self.delivery.delivery_config.get("url", ""))), str(exc)
            )
        raw = json.dumps(
            {"event": "ping", "delivery_id": self.delivery.id, "config_id": self.delivery.config_id}
        ).encode()
        signature = _signed(secret, [raw]) if secret and scheme != "standard" else None
        headers = {**headers, "Content-Type": "application/json"}
        if secret and scheme != "reporthub":
            ping_id = f"ping-{uuid.uuid4().hex}"
            headers |= standard_webhooks.headers(secret, ping_id, [raw])
        return await self._send(
            url, method, headers, raw, signature, timeout, verify, None, event="ping"
        )


def _is_json(content_type: str) -> bool:
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind == "application/json" or kind.endswith("+json")


def _signed(secret: str | None, parts: list[bytes]) -> tuple[str, str]:
    assert secret is not None
    timestamp = str(int(time.time()))
    return timestamp, sign(secret, timestamp, parts)


def _sign_file(secret: str | None, head: bytes, attempt: Attempt, tail: bytes) -> tuple[str, str]:
    """The signature of a multipart body, streamed through the HMAC (never held in memory)."""
    assert secret is not None and attempt.job.file is not None
    timestamp = str(int(time.time()))
    mac = hmac.new(secret.encode(), timestamp.encode() + b".", hashlib.sha256)
    mac.update(head)
    with attempt.job.file.path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            mac.update(chunk)
    mac.update(tail)
    return timestamp, mac.hexdigest()


def _multipart_frame(attempt: Attempt, document: Mapping[str, Any]) -> tuple[bytes, bytes, str]:
    """The bytes before and after the file in a multipart/form-data body."""
    assert attempt.job.file is not None
    boundary = f"reporthub-{uuid.uuid4().hex}"
    name = templating.safe_file_name(attempt.job.file.name, what="file_name")
    quoted = name.replace("\\", "\\\\").replace('"', '\\"')
    head = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="metadata"\r\n'
        "Content-Type: application/json\r\n\r\n"
        f"{json.dumps(document, default=str)}\r\n"
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{quoted}"\r\n'
        f"Content-Type: {attempt.job.file.media_type}\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    return head, tail, f"multipart/form-data; boundary={boundary}"
