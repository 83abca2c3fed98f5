"""Slack delivery through the official `slack_sdk` async client (`AsyncWebClient`).

delivery_config keys (besides the chat keys of chat.py: title, text, preview_rows, link_url,
timeout_seconds):
- `token` (required; a bot token with `files:write` and `chat:write`, inline or a reference),
  `channel` (required; the channel ID, e.g. `C0123456789`), `base_url` (default
  `https://slack.com/api/`; another Slack-compatible endpoint, or the tests' stand-in).
- `max_file_mb` (default 100): a larger file is not uploaded; with `oversize: "link"` (the
  default) the message carries the run's download link instead (chat.py), with `"fail"` (or when
  there is no link) the attempt fails for good, saying so.
- `rate_limit_retries` (default 2) and `max_wait_seconds` (default 30): a 429 answer is waited out
  inside the attempt by the SDK's own `AsyncRateLimitErrorRetryHandler`, at most that many times
  and only when its `Retry-After` is within `max_wait_seconds`; past that the attempt ends
  retryable with the server's Retry-After, and the delivery ledger schedules the retry then.

One attempt, in order:
1. `files.getUploadURLExternal` (filename, length), then the file's bytes streamed from disk to
   the upload URL it returned (never held in memory): the file exists, unshared, nobody sees it;
2. `attempt.confirm(...)` (fencing), then `chat.postMessage` with the summary, the preview table
   and, for an oversize file, the link: the delivery's commit point;
3. `files.completeUploadExternal` shares the file into the channel, in the message's thread.
A failure before 2 leaves nothing visible; a retry starts again from 1. A failure of 3 after the
message was posted is retried too (the file is not in the channel yet).

Repeats. Slack has no idempotency key for chat.postMessage (its `client_msg_id` is set by
Slack's own clients and is not a documented argument of the method), so every message carries
the attempt's idempotency key in its message metadata (`metadata`: event_type
`reporthubd_delivery`, event_payload `{"idempotency_key": "<run key>:<delivery id>"}`; a notice's
run key is `notice:<ledger id>`). An attempt that may repeat one that reached Slack unrecorded
(`Attempt.may_repeat`: a later attempt, a notice taken over after its sender was killed, the
first attempt of a recovery run) first looks for that key in the channel's latest
`HISTORY_LOOKBACK` messages (`conversations.history` with `include_all_metadata`, which needs
the `channels:history` or `groups:history` scope): found, it does not post again, and shares
the file into that message's thread. Without the scope (or when history cannot be read) it
posts, and the ledger records `dedup: "unavailable"`: the message may then appear twice. A
kill after the file was shared and before SUCCESS was recorded may share the file into the
thread a second time (the message itself is not repeated).

Errors: Slack's `error` codes about the token, scopes or channel (invalid_auth, not_in_channel,
channel_not_found, missing_scope...) fail for good; ratelimited, internal and fatal errors, 5xx,
timeouts and connection failures are retried. The token never reaches the ledger or a log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web.async_client import AsyncWebClient

from reporthubd.deliverers import chat
from reporthubd.deliverers.base import Attempt, AttemptResult, Deliverer, DeliveryError
from reporthubd.deliverers.common import (
    Options,
    describe,
    file_chunks,
    ok,
    permanent,
    retryable,
    url_target,
)
from reporthubd.deliverers.webhook import retry_after

DEFAULT_BASE_URL = "https://slack.com/api/"
METADATA_EVENT = "reporthubd_delivery"
HISTORY_LOOKBACK = 100
"""Messages of the channel searched for an earlier copy of a repeated attempt."""
MB = 1024 * 1024
PERMANENT_ERRORS = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "no_permission",
        "missing_scope",
        "channel_not_found",
        "not_in_channel",
        "is_archived",
        "restricted_action",
        "invalid_arguments",
        "invalid_channel",
        "msg_too_long",
        "invalid_blocks",
        "file_uploads_disabled",
        "file_upload_size_restricted",
    }
)
# The SDK's own request log could carry message text; the daemon's log has the attempt.
_SDK_LOG = logging.getLogger("reporthubd.deliverers.slack_sdk")
_SDK_LOG.setLevel(logging.WARNING)


class RateLimitWait(AsyncRateLimitErrorRetryHandler):
    """The SDK's 429 handler (it sleeps the answer's Retry-After), for waits up to `max_wait`
    seconds only: a longer one is left to the delivery ledger's retry."""

    def __init__(self, max_retry_count: int, max_wait: float) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self.max_wait = max_wait

    async def _can_retry_async(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is None or response.status_code != 429:
            return False
        values = {k.lower(): v for k, v in response.headers.items()}.get("retry-after") or ["1"]
        wait = retry_after(values[0])
        return wait is not None and wait.total_seconds() <= self.max_wait


@dataclass(frozen=True, kw_only=True)
class SlackSettings:
    token: str
    channel: str
    base_url: str
    max_file_bytes: float
    oversize: str
    rate_limit_retries: int
    max_wait: float
    timeout: float
    preview_rows: int

    @property
    def target(self) -> str:
        return f"{url_target(self.base_url).rstrip('/')}#{self.channel}"


def slack_settings(options: Options) -> SlackSettings:
    if options.config.get("token") in (None, ""):
        raise DeliveryError(
            "delivery_config.token is required (a Slack bot token with files:write and chat:write)"
        )
    token = options.secret("token") or ""
    channel = options.text("channel")
    if not channel:
        raise DeliveryError("delivery_config.channel: required (a Slack channel ID, e.g. C0123)")
    base_url = options.text("base_url", DEFAULT_BASE_URL) or DEFAULT_BASE_URL
    if not base_url.startswith(("https://", "http://")):
        raise DeliveryError("delivery_config.base_url: must start with https:// (or http://)")
    oversize = options.text("oversize", "link") or "link"
    if oversize not in {"link", "fail"}:
        raise DeliveryError("delivery_config.oversize: must be link or fail")
    return SlackSettings(
        token=token,
        channel=channel,
        base_url=base_url if base_url.endswith("/") else base_url + "/",
        max_file_bytes=options.number("max_file_mb", 100.0) * MB,
        oversize=oversize,
        rate_limit_retries=options.integer("rate_limit_retries", 2),
        max_wait=options.number("max_wait_seconds", 30.0),
        timeout=options.number("timeout_seconds", 30.0),
        preview_rows=chat.preview_rows(options),
    )


def client(settings: SlackSettings) -> AsyncWebClient:
    handlers: list[AsyncRetryHandler] = [AsyncConnectionErrorRetryHandler(max_retry_count=1)]
    if settings.rate_limit_retries > 0:
        handlers.append(RateLimitWait(settings.rate_limit_retries, settings.max_wait))
    return AsyncWebClient(
        token=settings.token,
        base_url=settings.base_url,
        timeout=max(1, int(settings.timeout)),
        logger=_SDK_LOG,
        retry_handlers=handlers,
    )


class SlackDeliverer(Deliverer):
    async def deliver(self, attempt: Attempt) -> AttemptResult:
        options = chat.chat_options(self.delivery)
        file = attempt.job.file
        try:
            settings = slack_settings(options)
            message = chat.build_message(attempt, options)
        except DeliveryError as exc:
            return permanent(_hint(options), str(exc))
        target = settings.target
        if file is None:
            return permanent(target, "no file to deliver")
        if not message.notice:
            preview = await asyncio.to_thread(
                chat.read_preview, file, settings.preview_rows, attempt.job.config
            )
            message = replace(message, preview=preview)
        upload = file.size <= settings.max_file_bytes and not message.notice
        details: dict[str, Any] = {"channel": settings.channel}
        if message.notice:
            details["sent_as"] = "notice"
        elif not upload:
            too_big = (
                f"{file.name} is {chat.human_size(file.size)}, over max_file_mb "
                f"({settings.max_file_bytes / MB:g} MB)"
            )
            if settings.oversize == "fail":
                return permanent(target, f"{too_big}; oversize is 'fail'")
            if not message.link:
                stored = await chat.link_from_store(attempt, options, self.settings)
                if isinstance(stored, AttemptResult):
                    return replace(stored, target=target)
                message = replace(message, link=stored)
            if not message.link:
                return chat.no_link(target, f"{too_big}, and the run has no download link", attempt)
            details["sent_as"] = "link"
        slack = client(settings)
        key = attempt.idempotency_key
        try:
            file_id = await self._upload(slack, settings, attempt) if upload else None
            await attempt.confirm("posting the Slack message")
            ts = await posted_before(slack, settings.channel, key) if attempt.may_repeat else None
            if attempt.may_repeat:
                details["dedup"] = "found" if ts else "unavailable" if ts is None else "none"
            if not ts:
                posted = await slack.chat_postMessage(
                    channel=settings.channel,
                    text=fallback_text(message),
                    blocks=blocks(message, oversize=not upload and not message.notice),
                    unfurl_links=False,
                    metadata={
                        "event_type": METADATA_EVENT,
                        "event_payload": {"idempotency_key": key},
                    },
                )
                ts = str(posted.get("ts") or "")
            details |= {"ts": ts, "idempotency_key": key}
            if file_id is not None:
                await slack.files_completeUploadExternal(
                    files=[{"id": file_id, "title": file.name}],
                    channel_id=settings.channel,
                    thread_ts=ts or None,
                )
                details |= {"sent_as": "file", "file_id": file_id, "size": file.size}
        except SlackApiError as exc:
            return _api_failure(target, exc)
        except _UploadFailed as exc:
            return exc.result
        except (SlackClientError, aiohttp.ClientError, OSError, TimeoutError) as exc:
            return retryable(target, f"Slack request failed: {describe(exc)}")
        finally:
            if slack.session is not None:
                await slack.session.close()
        return ok(target, **details)

    async def _upload(
        self, slack: AsyncWebClient, settings: SlackSettings, attempt: Attempt
    ) -> str:
        """Steps 1 of the module docstring: the upload URL, then the bytes, streamed."""
        file = attempt.job.file
        assert file is not None
        answer = await slack.files_getUploadURLExternal(filename=file.name, length=file.size)
        upload_url, file_id = answer.get("upload_url"), answer.get("file_id")
        if not isinstance(upload_url, str) or not isinstance(file_id, str):
            raise _UploadFailed(
                retryable(settings.target, "files.getUploadURLExternal gave no upload_url")
            )
        timeout = aiohttp.ClientTimeout(
            total=None, connect=settings.timeout, sock_read=settings.timeout
        )
        # aiohttp may stop reading the body at Content-Length without finishing the generator:
        # aclosing() closes it (and the file) here, not whenever the garbage collector runs.
        async with (
            contextlib.aclosing(file_chunks(file.path)) as chunks,
            aiohttp.ClientSession(timeout=timeout) as session,
            session.post(
                upload_url,
                data=chunks,
                headers={
                    "Content-Length": str(file.size),
                    "Content-Type": "application/octet-stream",
                },
                allow_redirects=False,
            ) as response,
        ):
            status = response.status
            text = (await response.content.read(300)).decode("utf-8", "replace")
            after = retry_after(response.headers.get("Retry-After"))
        if status != 200:
            reason = f"file upload answered HTTP {status}: {' '.join(text.split())[:200]}"
            result = (
                retryable(settings.target, reason, retry_after=after, status=status)
                if status == 429 or status >= 500
                else permanent(settings.target, reason, status=status)
            )
            raise _UploadFailed(result)
        return file_id

    async def test(self) -> AttemptResult:
        options = chat.chat_options(self.delivery)
        try:
            settings = slack_settings(options)
        except DeliveryError as exc:
            return permanent(_hint(options), str(exc))
        slack = client(settings)
        try:
            await slack.auth_test()
        except SlackApiError as exc:
            return _api_failure(settings.target, exc)
        except (SlackClientError, aiohttp.ClientError, OSError, TimeoutError) as exc:
            return retryable(settings.target, f"Slack request failed: {describe(exc)}")
        finally:
            if slack.session is not None:
                await slack.session.close()
        return ok(settings.target)


async def posted_before(slack: AsyncWebClient, channel: str, key: str) -> str | None:
    """The ts of the channel's latest message carrying `key` in its metadata; "" when none of
    the latest HISTORY_LOOKBACK carries it; None when the history cannot be read (a missing
    history scope, any API error): then nobody can tell, and the caller posts."""
    try:
        answer = await slack.conversations_history(
            channel=channel, limit=HISTORY_LOOKBACK, include_all_metadata=True
        )
    except (SlackApiError, SlackClientError, aiohttp.ClientError, OSError, TimeoutError):
        return None
    messages = answer.get("messages")
    if not isinstance(messages, list):
        return None
    for found in messages:
        meta = found.get("metadata") if isinstance(found, dict) else None
        payload = meta.get("event_payload") if isinstance(meta, dict) else None
        if (
            isinstance(payload, dict)
            and meta.get("event_type") == METADATA_EVENT  # type: ignore[union-attr]
            and payload.get("idempotency_key") == key
        ):
            return str(found.get("ts") or "") or None
    return ""


class _UploadFailed(Exception):
    def __init__(self, result: AttemptResult) -> None:
        super().__init__(result.error)
        self.result = result


def _hint(options: Options) -> str:
    base = options.config.get("base_url")
    channel = options.config.get("channel")
    where = url_target(base) if isinstance(base, str) else "slack"
    return f"{where}#{channel}" if isinstance(channel, str) else where


def _api_failure(target: str, exc: SlackApiError) -> AttemptResult:
    response = exc.response
    status = int(getattr(response, "status_code", 0) or 0)
    data = getattr(response, "data", None)
    code = str(data.get("error", "")) if isinstance(data, dict) else ""
    reason = f"Slack {code or f'HTTP {status}'}" + (f" (HTTP {status})" if code and status else "")
    if status == 429 or code == "ratelimited":
        headers = getattr(response, "headers", {}) or {}
        value = headers.get("Retry-After") or headers.get("retry-after")
        if isinstance(value, list):
            value = value[0] if value else None
        wait = retry_after(str(value)) if value else None
        return retryable(
            target, f"{reason}: rate limited", retry_after=wait or timedelta(seconds=1)
        )
    if code in PERMANENT_ERRORS or (400 <= status < 500 and status != 408 and not code):
        return permanent(target, reason)
    return retryable(target, reason)


def fallback_text(message: chat.Message) -> str:
    """The message's `text`: what notifications and screen readers show."""
    lines = [message.title]
    if message.text:
        lines.append(message.text)
    lines += [f"{label}: {value}" for label, value in message.summary]
    return "\n".join(lines)[:3000]


def _escape(text: str) -> str:
    """Slack mrkdwn's three control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def preview_table(rows: list[list[str]]) -> str:
    """The preview as a monospaced table (a code block keeps the columns aligned)."""
    width = max(len(row) for row in rows)
    padded = [row + [""] * (width - len(row)) for row in rows]
    sizes = [max(len(row[i]) for row in padded) for i in range(width)]
    lines = [" | ".join(cell.ljust(sizes[i]) for i, cell in enumerate(row)) for row in padded]
    lines.insert(1, "-+-".join("-" * size for size in sizes))
    table = "\n".join(line.rstrip() for line in lines)
    while len(table) > 2900 and len(lines) > 3:  # a section's text is at most 3000 characters
        lines.pop()
        table = "\n".join(line.rstrip() for line in lines)
    return "```\n" + _escape(table[:2900]) + "\n```"


def blocks(message: chat.Message, *, oversize: bool) -> list[dict[str, Any]]:
    """Block Kit: header, the text, the summary as fields, the preview table, the link."""
    out: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": message.title[:150]}}
    ]
    if message.text:
        out.append({"type": "section", "text": {"type": "mrkdwn", "text": message.text[:3000]}})
    out.append(
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": f"*{_escape(label)}*\n{_escape(value)[:1900]}"}
                for label, value in message.summary[:10]
            ],
        }
    )
    if message.preview:
        shown = len(message.preview) - 1
        out.append(
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": f"*Preview* (first {shown} of {message.row_count} rows)\n"
                    + preview_table(message.preview),
                },
            }
        )
    if message.link and message.notice:
        out.append(_button("Open the run", message.link, "open_run"))
    elif message.link:
        label = (
            f"{message.file_name} is too large for Slack: download it here"
            if oversize
            else f"Download {message.file_name}"
        )
        out.append({"type": "section", "text": {"type": "mrkdwn", "text": _escape(label)}})
        out.append(_button("Download", message.link, "download"))
    return out


def _button(text: str, url: str, action_id: str) -> dict[str, Any]:
    return {
        "type": "actions",
        "elements": [
            {
                "type": "button",
                "text": {"type": "plain_text", "text": text},
                "url": url,
                "action_id": action_id,
            }
        ],
    }
