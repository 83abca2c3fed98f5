"""The settings check of the chat deliveries (slack, teams, google_chat) and of the webhook's
body and signature options: what `reporthubd check`, `reporthubd apply` and the control plane's
test delivery report before anything is sent, each problem naming its key.

Light on purpose: it imports no HTTP client and no SDK (`reporthubd check` loads neither,
tests/test_import_budget.py), resolves no secret (only their presence and form are checked), and
parses a webhook `body` with Jinja only when there is one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from reporthubd import domain, secrets
from reporthubd.deliverers.base import DeliveryError
from reporthubd.deliverers.common import Options

M = domain.DeliveryMethod
MAX_PREVIEW_ROWS = 20


def problems(method: M, config: Mapping[str, Any]) -> list[str]:
    """Every problem of a delivery's settings (`delivery_config.KEY ...`); [] when none, and for
    the methods this module does not check."""
    if method is M.WEBHOOK:
        return _webhook(config)
    if method in (M.SLACK, M.TEAMS, M.GOOGLE_CHAT):
        return _chat(method, config)
    return []


def _present(config: Mapping[str, Any], key: str, what: str) -> list[str]:
    value = config.get(key)
    if value in (None, ""):
        return [f"delivery_config.{key} is required ({what})"]
    if not (isinstance(value, str) or secrets.is_reference(value)):
        return [f'delivery_config.{key}: must be a string, {{"env": NAME}} or {{"file": PATH}}']
    return []


def _chat(method: M, config: Mapping[str, Any]) -> list[str]:
    found: list[str] = []
    options = Options(config, "delivery_config")
    if method is M.SLACK:
        found += _present(config, "token", "a Slack bot token with files:write and chat:write")
        channel = config.get("channel")
        if not isinstance(channel, str) or not channel:
            found.append("delivery_config.channel is required (a Slack channel ID, e.g. C0123)")
        if config.get("oversize", "link") not in ("link", "fail"):
            found.append("delivery_config.oversize: must be link or fail")
        base = config.get("base_url")
        if base is not None and not (
            isinstance(base, str) and base.startswith(("https://", "http://"))
        ):
            found.append("delivery_config.base_url: must start with https:// (or http://)")
    else:
        found += _present(
            config, "url", "the channel's incoming webhook URL, which holds its token"
        )
        url = config.get("url")
        if (
            isinstance(url, str)
            and url not in ("", secrets.MASK)
            and not url.startswith(("https://", "http://"))
        ):
            found.append("delivery_config.url: must start with https:// (or http://)")

    def rows() -> None:
        value = options.integer("preview_rows", 5)
        if not 0 <= value <= MAX_PREVIEW_ROWS:
            raise DeliveryError(f"delivery_config.preview_rows: must be 0 to {MAX_PREVIEW_ROWS}")

    checks: dict[str, Callable[[], object]] = {
        "preview_rows": rows,
        "timeout_seconds": lambda: options.number("timeout_seconds", 30.0),
        "max_file_mb": lambda: options.number("max_file_mb", 1.0),
        "max_wait_seconds": lambda: options.number("max_wait_seconds", 1.0),
        "rate_limit_retries": lambda: options.integer("rate_limit_retries", 0),
        "require_link": lambda: options.flag("require_link", False),
        "verify_tls": lambda: options.flag("verify_tls", True),
        "title": lambda: options.text("title"),
        "text": lambda: options.text("text"),
        "link_url": lambda: options.text("link_url"),
        "thread_key": lambda: options.text("thread_key"),
    }
    store = config.get("link_store")
    if store is not None and not (
        isinstance(store, Mapping) and isinstance(store.get("bucket"), str) and store["bucket"]
    ):
        found.append("delivery_config.link_store: must be an object with a bucket (s3 keys)")
    for key, check in checks.items():
        if key in config:
            try:
                check()
            except DeliveryError as exc:
                found.append(str(exc))
    return found


def _webhook(config: Mapping[str, Any]) -> list[str]:
    found: list[str] = []
    scheme = config.get("signature", "reporthub")
    if scheme not in ("reporthub", "standard", "both"):
        found.append("delivery_config.signature: must be reporthub, standard or both")
    elif scheme != "reporthub":
        secret = config.get("secret")
        if secret in (None, ""):
            found.append(f"delivery_config.secret is required for signature {scheme!r}")
        elif isinstance(secret, str) and secret != secrets.MASK:
            from reporthubd.deliverers import standard_webhooks

            try:
                standard_webhooks.key(secret)
            except DeliveryError as exc:
                found.append(str(exc))
    if "body" in config:
        if config.get("mode", "json") != "json":
            found.append("delivery_config.body: only with mode json")
        from reporthubd.deliverers import json_body

        if problem := json_body.check(config["body"]):
            found.append(problem)
    content_type = config.get("content_type")
    if content_type is not None and not (isinstance(content_type, str) and "/" in content_type):
        found.append("delivery_config.content_type: must be a media type, e.g. application/json")
    return found
