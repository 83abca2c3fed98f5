"""What the chat deliveries (slack, teams, google_chat) share: their common options, the run's
summary and preview rows, the download link, and posting a JSON message to a chat webhook
(config_check.py has the check of their settings that `reporthubd check`, `apply` and the API run).

Common delivery_config keys:
- `title` (template, default `Report {report_name}`), `text` (template, an optional line under it);
- `preview_rows` (default 5, at most 20; 0: none): the header and first rows of a CSV report;
- `link_store` (object: the keys of an s3 delivery, `bucket` required, `presign_seconds` default
  7 days, `key` default `reporthubd-links/{execution_id}/{file_name}`): where the chat delivery
  uploads the file itself to get a link when the run has no S3 link of its own;
- `link_url` (template): the link a message carries when there is no file link at all (for
  example the report's page in a portal); `timeout_seconds` (default 30).

The download link: a chat message links to the file through the presigned URL of an S3 delivery
of the same execution (`presign_seconds` set on that delivery; the ledger starts chat deliveries
once the round's S3 uploads are done, and a retry reuses the URL an earlier upload recorded),
else a presigned URL of its own upload to `link_store`, else `link_url`. Slack uploads the file
and uses the link only when the file is over its `max_file_mb`; a Teams or Google Chat webhook
cannot carry a file at all, so its card always links to it when there is a link
(`require_link: true` makes a missing link a failure).
"""

from __future__ import annotations

import asyncio
import csv
import gzip
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import aiohttp

from reporthubd import domain, secrets
from reporthubd.config import Settings
from reporthubd.deliverers import templating
from reporthubd.deliverers.base import (
    Attempt,
    AttemptResult,
    DeliveryError,
    ProducedFile,
    deliverer_class,
)
from reporthubd.deliverers.common import (
    Options,
    describe,
    ok,
    permanent,
    retryable,
    url_target,
)
from reporthubd.deliverers.config_check import MAX_PREVIEW_ROWS
from reporthubd.deliverers.webhook import retry_after

DEFAULT_TITLE = "Report {report_name}"
MAX_PREVIEW_COLUMNS = 12
MAX_CELL = 80
MB = 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class Message:
    """What every chat message says about one run, already rendered."""

    title: str
    text: str | None
    summary: list[tuple[str, str]]
    preview: list[list[str]] | None
    """Header row first; None when the report has no preview (not CSV, or preview_rows 0)."""
    link: str | None
    file_name: str | None
    row_count: int | None
    notice: bool = False
    """A notice about a run (notify/sender.py), not a report: no file, no preview."""


def chat_options(delivery: domain.Delivery) -> Options:
    return Options(delivery.delivery_config, "delivery_config")


def webhook_url(options: Options) -> str:
    """A chat webhook URL carries its credential (Teams' `sig`, Google Chat's `key` and
    `token`): it is read like a secret (inline or a reference) and remembered for redaction."""
    if options.config.get("url") in (None, ""):
        raise DeliveryError(
            "delivery_config.url: required (the channel's incoming webhook URL; it holds the "
            'credential, so prefer {"env": NAME} or {"file": PATH})'
        )
    url = options.secret("url") or ""
    if not url.startswith(("https://", "http://")):
        raise DeliveryError("delivery_config.url: must start with https:// (or http://)")
    return url


def target_hint(options: Options, default: str) -> str:
    """The ledger's target when the settings are unusable: the URL without its query."""
    url = options.config.get("url")
    return url_target(url) if isinstance(url, str) and url else default


def preview_rows(options: Options) -> int:
    rows = options.integer("preview_rows", 5)
    if not 0 <= rows <= MAX_PREVIEW_ROWS:
        raise DeliveryError(f"delivery_config.preview_rows: must be 0 to {MAX_PREVIEW_ROWS}")
    return rows


def build_message(attempt: Attempt, options: Options) -> Message:
    """The rendered title, text, summary and link of the run (the preview is read separately,
    off the event loop, by `read_preview`)."""
    variables = templating.attempt_variables(attempt)
    if is_notice(variables):
        return notice_message(variables, attempt)
    title = templating.render(
        options.text("title", DEFAULT_TITLE) or DEFAULT_TITLE, variables, what="title"
    )
    text_template = options.text("text")
    text = templating.render(text_template, variables, what="text") if text_template else None
    file = attempt.job.file
    return Message(
        title=" ".join(title.split()),
        text=text,
        summary=summary(variables, attempt),
        preview=None,
        link=download_link(options, variables),
        file_name=file.name if file else None,
        row_count=file.row_count if file else None,
    )


def is_notice(variables: Mapping[str, Any]) -> bool:
    """Whether the job is a notice: the notice sender (notify/sender.py) puts the notice's words
    into the variables (`notice_subject`, `notice_text`, `notice_event`, `run_url`)."""
    return isinstance(variables.get("notice_text"), str)


def notice_message(variables: Mapping[str, Any], attempt: Attempt) -> Message:
    """A notice as a chat message: its subject as title, its text, the run's link."""
    subject = str(variables.get("notice_subject") or variables.get("notice_event") or "Notice")
    lines = [("Report", attempt.job.config.name), ("Event", str(variables.get("notice_event")))]
    link = variables.get("run_url")
    return Message(
        title=" ".join(subject.split()),
        text=str(variables["notice_text"]),
        summary=lines,
        preview=None,
        link=link if isinstance(link, str) and link.startswith(("https://", "http://")) else None,
        file_name=None,
        row_count=None,
        notice=True,
    )


LINK_KEY = "reporthubd-links/{execution_id}/{file_name}"
LINK_SECONDS = 7 * 24 * 3600  # S3's longest presigned URL (SigV4)


async def link_from_store(
    attempt: Attempt, options: Options, settings: Settings
) -> str | AttemptResult | None:
    """With `link_store` (the keys of an s3 delivery: bucket, endpoint_url, credentials, key,
    presign_seconds), upload the file there and return its presigned URL, or the failed
    upload's result; None without a link_store. Used when the run has no S3 link of its own."""
    store = options.mapping("link_store")
    if not store or attempt.job.file is None:
        return None
    config = {"key": LINK_KEY, "presign_seconds": LINK_SECONDS} | dict(store)
    delivery = replace(
        attempt.delivery, method=domain.DeliveryMethod.S3, delivery_config=config, recipients=()
    )
    cls = await asyncio.to_thread(deliverer_class, "s3")  # aioboto3 only when it is used
    result = await cls(delivery, settings).deliver(replace(attempt, delivery=delivery))
    url = result.details.get("presigned_url")
    if result.ok and isinstance(url, str):
        return url
    return replace(result, ok=False, error=f"link_store: {result.error or 'no presigned URL'}")


def no_link(target: str, what: str, attempt: Attempt) -> AttemptResult:
    """The failure of an attempt that needs the run's link and has none. While an S3 delivery
    of this round is meant to presign one (it failed for now and will retry), the attempt is
    retried too: the retry picks up the link that upload records. Otherwise it fails for good."""
    fix = "add presign_seconds to an S3 delivery of this report, or set link_store or link_url"
    presigning = [
        d
        for d in attempt.job.deliveries
        if d.method is domain.DeliveryMethod.S3 and d.delivery_config.get("presign_seconds")
    ]
    if presigning:
        return retryable(target, f"{what}; the S3 delivery's link is not there yet")
    return permanent(target, f"{what}; {fix}")


def download_link(options: Options, variables: Mapping[str, Any]) -> str | None:
    """The run's S3 presigned URL, else the rendered `link_url`, else None."""
    url = variables.get("download_url")
    if isinstance(url, str) and url:
        return url
    template = options.text("link_url")
    if not template:
        return None
    rendered = templating.render(template, variables, what="link_url").strip()
    if not rendered.startswith(("https://", "http://")):
        raise DeliveryError(f"link_url: {rendered!r} is not an http(s) URL")
    return rendered


def summary(variables: Mapping[str, Any], attempt: Attempt) -> list[tuple[str, str]]:
    """(label, value) lines: report, period, rows, file, parameters, execution."""
    lines = [("Report", attempt.job.config.name)]
    start, end = variables.get("window_start"), variables.get("window_end")
    scheduled = variables.get("scheduled_for")
    if isinstance(start, datetime) and isinstance(end, datetime):
        lines.append(("Period", f"{start.isoformat()} – {end.isoformat()}"))
    elif isinstance(scheduled, datetime):
        lines.append(("Scheduled for", scheduled.isoformat()))
    file = attempt.job.file
    if file is not None:
        lines.append(("Rows", str(file.row_count)))
        lines.append(("File", f"{file.name} ({human_size(file.size)})"))
    parameters = variables.get("parameters") or {}
    if parameters:
        lines.append(("Parameters", ", ".join(f"{k}={v}" for k, v in parameters.items())))
    lines.append(("Execution", attempt.job.execution_id))
    return lines


def human_size(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    if size < MB:
        return f"{size / 1024:.1f} KB"
    return f"{size / MB:.1f} MB"


def read_preview(
    file: ProducedFile, rows: int, config: domain.ReportConfig
) -> list[list[str]] | None:
    """The header and first `rows` rows of a CSV report (cells and columns cut to what a chat
    message shows); None for other formats or an unreadable file. Reads only those lines."""
    name = file.name.lower()
    if rows <= 0 or not name.endswith((".csv", ".csv.gz")):
        return None
    delimiter = str(config.format_options.get("delimiter", ",") or ",")[:1]
    opener: Any = gzip.open if name.endswith(".gz") else open
    try:
        with opener(file.path, "rt", encoding="utf-8-sig", newline="") as handle:
            found: list[list[str]] = []
            for line in csv.reader(handle, delimiter=delimiter):
                found.append([_cell(cell) for cell in line[:MAX_PREVIEW_COLUMNS]])
                if len(found) > rows:
                    break
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    return found or None


def _cell(value: str) -> str:
    value = " ".join(value.split())
    return value if len(value) <= MAX_CELL else value[: MAX_CELL - 1] + "…"


async def post_json(
    url: str,
    document: Mapping[str, Any],
    *,
    limit: float,
    verify: bool = True,
    idempotency_key: str | None = None,
) -> AttemptResult:
    """POST one JSON message to a chat webhook. 2xx delivered; 429 and 5xx retried (honouring
    Retry-After); connection failures and timeouts retried; anything else fails for good."""
    target = url_target(url)
    client_timeout = aiohttp.ClientTimeout(total=None, connect=limit, sock_read=limit)
    body = json.dumps(document, ensure_ascii=False, default=str).encode()
    try:
        async with (
            aiohttp.ClientSession(timeout=client_timeout) as session,
            session.post(
                url,
                data=body,
                headers={"Content-Type": "application/json; charset=utf-8"}
                | ({"Idempotency-Key": idempotency_key} if idempotency_key else {}),
                allow_redirects=False,
                ssl=verify,
            ) as response,
        ):
            text = (await response.content.read(500)).decode("utf-8", "replace")
            status = response.status
            after = retry_after(response.headers.get("Retry-After"))
    except TimeoutError as exc:
        return retryable(target, f"timed out after {limit:g}s ({describe(exc)})")
    except aiohttp.ClientSSLError as exc:
        return permanent(target, f"TLS verification failed: {describe(exc)}")
    except (aiohttp.ClientError, OSError) as exc:
        return retryable(target, f"connection failed: {describe(exc)}")
    snippet = secrets.redact_text(" ".join(text.split())[:200])
    if 200 <= status < 300:
        return ok(target, status=status, bytes=len(body))
    reason = f"HTTP {status}" + (f": {snippet}" if snippet else "")
    if status == 429 or status >= 500:
        return retryable(target, reason, retry_after=after, status=status)
    return permanent(target, reason, status=status)


async def post_card(
    attempt: Attempt,
    options: Options,
    settings: Settings,
    message: Message,
    *,
    url: str,
    post_url: str,
    rows: int,
    require_link: bool,
    limit: float,
    verify: bool,
    card: Callable[[Message], Mapping[str, Any]],
    what: str,
) -> AttemptResult:
    """What the card webhooks (Teams, Google Chat) do once their settings are read: find the
    run's link (or refuse without one under require_link), add the preview rows, confirm that
    this node still owns the run, post the card, and say what was sent (a notice, a link or the
    summary alone)."""
    if not message.link and not message.notice:
        stored = await link_from_store(attempt, options, settings)
        if isinstance(stored, AttemptResult):
            return replace(stored, target=url_target(url))
        message = replace(message, link=stored)
    if require_link and not message.link and not message.notice:
        return no_link(
            url_target(url), "require_link is set but the run has no download link", attempt
        )
    if attempt.job.file is not None and rows and not message.notice:
        preview = await asyncio.to_thread(read_preview, attempt.job.file, rows, attempt.job.config)
        message = replace(message, preview=preview)
    document = card(message)
    await attempt.confirm(f"posting the {what}")
    result = await post_json(
        post_url, document, limit=limit, verify=verify, idempotency_key=attempt.idempotency_key
    )
    if result.ok:
        linked = "notice" if message.notice else "link" if message.link else "summary"
        return replace(result, details={**result.details, "sent_as": linked})
    return result
