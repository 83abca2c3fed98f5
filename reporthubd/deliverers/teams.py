"""Microsoft Teams delivery: a Workflows (Power Automate) webhook carrying an Adaptive Card.

Teams' old Office 365 connectors are retired; a channel's "Post to a channel when a webhook
request is received" workflow takes a message whose one attachment is an Adaptive Card:

    {"type": "message", "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive",
      "contentUrl": null, "content": {"type": "AdaptiveCard", "version": "1.5", ...}}]}

The card: the title, the text, the summary as a FactSet, the preview rows as a Table (first row
as header), and an `Action.OpenUrl` to the run's download link (chat.py: the S3 presigned URL of
the same execution, else `link_url`). A webhook cannot carry the file itself, so the card always
links to it when there is a link; `require_link: true` fails the attempt when there is none.
Preview rows are dropped from the end until the message is under `MAX_MESSAGE_BYTES` (Teams
refuses messages over about 28 KB).

delivery_config keys: `url` (required: the workflow's HTTP trigger URL; its `sig` query parameter
is the credential, so prefer {"env": NAME} or {"file": PATH}), the chat keys of chat.py
(title, text, preview_rows, link_url, timeout_seconds), `require_link`, `verify_tls`.

A 2xx answer (the workflow answers 202 Accepted) is delivered; 429 and 5xx are retried with
their Retry-After; anything else fails for good. The ledger's target is the URL without its query.

Repeats: Teams cannot deduplicate. A Workflows webhook takes no request or message id, and an
Adaptive Card has no field Teams drops a repeat by. The post carries the attempt's
`Idempotency-Key` header (`<run key>:<delivery id>`), which a workflow could check itself; the
card posted by the stock "post to a channel" flow does not. A node killed after Teams accepted
the card and before the ledger recorded it posts the card again once its lease or the run's
recovery comes (docs/operators.md, "What exactly once means per channel").
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from reporthubd.deliverers import chat
from reporthubd.deliverers.base import Attempt, AttemptResult, Deliverer, DeliveryError
from reporthubd.deliverers.common import permanent, url_target

CARD_VERSION = "1.5"
ATTACHMENT_TYPE = "application/vnd.microsoft.card.adaptive"
MAX_MESSAGE_BYTES = 25_000


def card(message: chat.Message) -> dict[str, Any]:
    """The Adaptive Card (version 1.5: Table needs it) for one run."""
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": message.title, "weight": "Bolder", "size": "Medium"}
        | {"wrap": True, "style": "heading"}
    ]
    if message.text:
        body.append({"type": "TextBlock", "text": message.text, "wrap": True})
    body.append(
        {
            "type": "FactSet",
            "facts": [{"title": label, "value": value} for label, value in message.summary],
        }
    )
    if message.preview:
        head, *rows = message.preview
        width = max(len(row) for row in message.preview)
        body.append(
            {
                "type": "TextBlock",
                "text": f"Preview: first {len(rows)} of {message.row_count} rows",
                "weight": "Bolder",
                "spacing": "Medium",
                "wrap": True,
            }
        )
        body.append(
            {
                "type": "Table",
                "firstRowAsHeader": True,
                "showGridLines": True,
                "columns": [{"width": 1} for _ in range(width)],
                "rows": [_row(head, width), *(_row(row, width) for row in rows)],
            }
        )
    document: dict[str, Any] = {
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": CARD_VERSION,
        "body": body,
    }
    if message.link:
        title = (
            "Open the run"
            if message.notice
            else f"Download {message.file_name}"
            if message.file_name
            else "Download"
        )
        document["actions"] = [{"type": "Action.OpenUrl", "title": title, "url": message.link}]
    return document


def _row(cells: list[str], width: int) -> dict[str, Any]:
    padded = cells + [""] * (width - len(cells))
    return {
        "type": "TableRow",
        "cells": [
            {"type": "TableCell", "items": [{"type": "TextBlock", "text": cell, "wrap": True}]}
            for cell in padded
        ],
    }


def workflow_message(message: chat.Message) -> dict[str, Any]:
    """The webhook's JSON: the card as the one attachment, trimmed to the size Teams takes."""
    while True:
        document = {
            "type": "message",
            "attachments": [
                {"contentType": ATTACHMENT_TYPE, "contentUrl": None, "content": card(message)}
            ],
        }
        size = len(json.dumps(document, ensure_ascii=False).encode())
        if size <= MAX_MESSAGE_BYTES or not message.preview or len(message.preview) <= 1:
            return document
        preview = message.preview[:-1]
        message = replace(message, preview=preview if len(preview) > 1 else None)


class TeamsDeliverer(Deliverer):
    async def deliver(self, attempt: Attempt) -> AttemptResult:
        options = chat.chat_options(self.delivery)
        hint = chat.target_hint(options, "teams")
        try:
            url = chat.webhook_url(options)
            message = chat.build_message(attempt, options)
            rows = chat.preview_rows(options)
            require_link = options.flag("require_link", False)
            timeout = options.number("timeout_seconds", 30.0)
            verify = options.flag("verify_tls", True)
        except DeliveryError as exc:
            return permanent(hint, str(exc))
        return await chat.post_card(
            attempt,
            options,
            self.settings,
            message,
            url=url,
            post_url=url,
            rows=rows,
            require_link=require_link,
            limit=timeout,
            verify=verify,
            card=workflow_message,
            what="Teams card",
        )

    async def test(self) -> AttemptResult:
        """A Workflows trigger has no side-effect-free call: only the settings are checked."""
        options = chat.chat_options(self.delivery)
        hint = chat.target_hint(options, "teams")
        try:
            url = chat.webhook_url(options)
            chat.preview_rows(options)
        except DeliveryError as exc:
            return permanent(hint, str(exc))
        return AttemptResult(
            ok=True,
            target=url_target(url),
            details={
                "note": "settings valid; a Workflows webhook cannot be called without posting"
            },
        )
