"""Helpers shared by the deliverers: reading `delivery_config`, results, secrets, files."""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections.abc import AsyncGenerator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit, urlunsplit

from reporthubd import secrets
from reporthubd.deliverers.base import AttemptResult, DeliveryError

CHUNK = 1024 * 1024


class Options:
    """Typed reads of a delivery's JSON config; a wrong type is a `DeliveryError` naming the key."""

    def __init__(self, config: Mapping[str, Any], what: str) -> None:
        self.config = config
        self.what = what

    def _fail(self, key: str, expected: str) -> DeliveryError:
        return DeliveryError(
            f"{self.what}.{key}: must be {expected}, got {type(self.config[key]).__name__}"
        )

    def text(self, key: str, default: str | None = None) -> str | None:
        value = self.config.get(key)
        if value is None or value == "":
            return default
        if not isinstance(value, str):
            raise self._fail(key, "a string")
        return value

    def required(self, key: str) -> str:
        value = self.text(key)
        if value is None:
            raise DeliveryError(f"{self.what}.{key}: required")
        return value

    def number(self, key: str, default: float) -> float:
        value = self.config.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._fail(key, "a number")
        if value < 0:
            raise DeliveryError(f"{self.what}.{key}: must not be negative")
        return float(value)

    def integer(self, key: str, default: int) -> int:
        value = self.config.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._fail(key, "an integer")
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self.config.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self._fail(key, "true or false")
        return value

    def mapping(self, key: str) -> Mapping[str, Any]:
        value = self.config.get(key)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self._fail(key, "an object")
        return value

    def secret(self, key: str) -> str | None:
        """An inline secret or an {"env"}/{"file"} reference, resolved now."""
        value = self.config.get(key)
        if value is None or value == "":
            return None
        try:
            return secrets.resolve(value, where=f"{self.what}.{key}")
        except secrets.SecretError as exc:
            raise DeliveryError(str(exc)) from None


def ok(target: str, **details: Any) -> AttemptResult:
    return AttemptResult(ok=True, target=target, details=details)


def permanent(target: str, error: str, **details: Any) -> AttemptResult:
    return AttemptResult(
        ok=False, target=target, error=secrets.redact_text(error), retryable=False, details=details
    )


def retryable(
    target: str, error: str, *, retry_after: timedelta | None = None, **details: Any
) -> AttemptResult:
    return AttemptResult(
        ok=False,
        target=target,
        error=secrets.redact_text(error),
        retryable=True,
        retry_after=retry_after,
        details=details,
    )


def describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    name = type(exc).__name__
    return secrets.redact_text(f"{name}: {text}" if text else name)


def is_certificate_error(exc: BaseException) -> bool:
    """A TLS certificate that does not verify (anywhere in the exception's chain): waiting will
    not fix it, so it is a permanent failure."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError | ssl.CertificateError):
            return True
        if "CERTIFICATE_VERIFY_FAILED" in str(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def url_target(url: str) -> str:
    """A URL for the ledger: no user info, no query string (either may carry a secret)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


async def open_for_reading(path: Path) -> BinaryIO:
    """Open a file for reading in a worker thread.

    Cancelled while the thread is still opening it (aiohttp cancels a request body's writer as
    soon as the answer arrives), the file is closed the moment it opens instead of being left to
    the garbage collector with an "unclosed file" warning.
    """
    opening = asyncio.get_running_loop().create_task(
        asyncio.to_thread(path.open, "rb"), name=f"open {path.name}"
    )
    try:
        return await asyncio.shield(opening)
    except asyncio.CancelledError:
        opening.add_done_callback(_close_when_opened)
        raise


def _close_when_opened(opening: asyncio.Task[BinaryIO]) -> None:
    if not opening.cancelled() and opening.exception() is None:
        opening.result().close()


async def file_chunks(path: Path, chunk_size: int = CHUNK) -> AsyncGenerator[bytes, None]:
    """Read a file in chunks off the event loop (bounded memory); closing the generator closes
    the file."""
    handle = await open_for_reading(path)
    try:
        while chunk := await asyncio.to_thread(handle.read, chunk_size):
            yield chunk
    finally:
        # Closed on the loop: closing a read handle does no I/O worth a thread, and an await
        # here can itself be cancelled (a second cancel of aiohttp's body writer), which left
        # the file to the garbage collector ("unclosed file", seen in the Slack upload tests).
        handle.close()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
