"""Google Chat delivery: a space's incoming webhook carrying a card (`cardsV2`).

The message: `text` (what notifications show), and one card with a header (the title, the
report's file as subtitle), a section of the summary (`decoratedText` widgets), a section with
the preview rows (a `textParagraph`, header row in bold; Chat's text widgets take only a few
HTML tags, so every cell is escaped), and a button to the run's download link (chat.py: the S3
presigned URL of the same execution, else `link_url`). A webhook cannot carry the file itself;
`require_link: true` fails the attempt when there is no link.

delivery_config keys: `url` (required: the webhook URL; its `key` and `token` query parameters
are the credential, so prefer {"env": NAME} or {"file": PATH}), the chat keys of chat.py (title,
text, preview_rows, link_url, timeout_seconds), `require_link`, `verify_tls`, and `thread_key`
(template, e.g. `{report_name}`): messages with the same key go into one thread
(`messageReplyOption=REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD`).

A 2xx answer is delivered; 429 and 5xx are retried with their Retry-After; anything else fails
for good. The ledger's target is the URL without its query.

Repeats: every post carries `requestId` (a UUID derived from the attempt's idempotency key,
`<run key>:<delivery id>`, the same on every attempt and node; a notice's run key is
`notice:<ledger id>`). Chat's spaces.messages.create, which an incoming webhook calls, documents
that an existing request ID returns the message created with it instead of creating a new one,
so a post repeated after a kill (the answer arrived, the ledger's record did not) is not shown
twice. (Checked here against the stand-in only; the real service cannot be reached.)
"""

from __future__ import annotations

import html
import uuid
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from reporthubd.deliverers import chat, templating
from reporthubd.deliverers.base import Attempt, AttemptResult, Deliverer, DeliveryError
from reporthubd.deliverers.common import permanent, url_target

MAX_PREVIEW_TEXT = 3500


def card_message(message: chat.Message, card_id: str) -> dict[str, Any]:
    sections: list[dict[str, Any]] = [
        {
            "header": "Summary",
            "widgets": [
                {"decoratedText": {"topLabel": label, "text": html.escape(value), "wrapText": True}}
                for label, value in message.summary
            ],
        }
    ]
    if message.text:
        sections.insert(0, {"widgets": [{"textParagraph": {"text": html.escape(message.text)}}]})
    if message.preview:
        head, *rows = message.preview
        lines = ["<b>" + html.escape(" | ".join(head)) + "</b>"]
        lines += [html.escape(" | ".join(row)) for row in rows]
        while len("<br>".join(lines)) > MAX_PREVIEW_TEXT and len(lines) > 2:
            lines.pop()
        sections.append(
            {
                "header": f"Preview: first {len(lines) - 1} of {message.row_count} rows",
                "collapsible": False,
                "widgets": [{"textParagraph": {"text": "<br>".join(lines)}}],
            }
        )
    if message.link:
        title = (
            "Open the run"
            if message.notice
            else f"Download {message.file_name}"
            if message.file_name
            else "Download"
        )
        sections.append(
            {
                "widgets": [
                    {
                        "buttonList": {
                            "buttons": [
                                {"text": title, "onClick": {"openLink": {"url": message.link}}}
                            ]
                        }
                    }
                ]
            }
        )
    header: dict[str, Any] = {"title": message.title}
    if message.file_name:
        header["subtitle"] = message.file_name
    fallback = "\n".join([message.title, *(f"{k}: {v}" for k, v in message.summary)])
    return {
        "text": fallback,
        "cardsV2": [{"cardId": card_id, "card": {"header": header, "sections": sections}}],
    }


def with_thread(url: str, thread_key: str | None) -> str:
    if not thread_key:
        return url
    parts = urlsplit(url)
    query = [
        (k, v) for k, v in parse_qsl(parts.query) if k not in {"threadKey", "messageReplyOption"}
    ]
    query += [
        ("threadKey", thread_key),
        ("messageReplyOption", "REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD"),
    ]
    return urlunsplit(parts._replace(query=urlencode(query)))


def with_request_id(url: str, key: str) -> str:
    """The post URL with `requestId`: the same for every repeat of one message."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "requestId"]
    query.append(("requestId", str(uuid.uuid5(uuid.NAMESPACE_URL, f"reporthubd:{key}"))))
    return urlunsplit(parts._replace(query=urlencode(query)))


class GoogleChatDeliverer(Deliverer):
    async def deliver(self, attempt: Attempt) -> AttemptResult:
        options = chat.chat_options(self.delivery)
        hint = chat.target_hint(options, "google_chat")
        try:
            url = chat.webhook_url(options)
            message = chat.build_message(attempt, options)
            rows = chat.preview_rows(options)
            require_link = options.flag("require_link", False)
            timeout = options.number("timeout_seconds", 30.0)
            verify = options.flag("verify_tls", True)
            key_template = options.text("thread_key")
            thread_key = (
                templating.render(
                    key_template, templating.attempt_variables(attempt), what="thread_key"
                ).strip()
                if key_template
                else None
            )
        except DeliveryError as exc:
            return permanent(hint, str(exc))
        run = attempt.job.run_key or attempt.job.execution_id
        return await chat.post_card(
            attempt,
            options,
            self.settings,
            message,
            url=url,
            post_url=with_request_id(with_thread(url, thread_key), attempt.idempotency_key),
            rows=rows,
            require_link=require_link,
            limit=timeout,
            verify=verify,
            card=lambda message: card_message(message, f"report-{run}-{attempt.delivery.id}"),
            what="Google Chat card",
        )

    async def test(self) -> AttemptResult:
        """A webhook has no side-effect-free call: only the settings are checked."""
        options = chat.chat_options(self.delivery)
        try:
            url = chat.webhook_url(options)
            chat.preview_rows(options)
        except DeliveryError as exc:
            return permanent(chat.target_hint(options, "google_chat"), str(exc))
        return AttemptResult(
            ok=True,
            target=url_target(url),
            details={"note": "settings valid; a chat webhook cannot be called without posting"},
        )
