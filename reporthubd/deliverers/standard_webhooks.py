"""Standard Webhooks signatures (https://www.standardwebhooks.com), beside reporthubd's own.

Three headers: `webhook-id` (the message's id: the same on every retry of one delivery of one
run, so a receiver drops repeats), `webhook-timestamp` (unix seconds) and `webhook-signature`
(`v1,<base64 of HMAC-SHA256(key, "<id>.<timestamp>." + body)>`), where the key is the secret's
bytes: the secret must be given as `whsec_<base64>`, the form the reference libraries take
(`standardwebhooks.Webhook("whsec_...").verify(body, headers)`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Iterable
from pathlib import Path

from reporthubd.deliverers.base import DeliveryError

PREFIX = "whsec_"
ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
CHUNK = 1024 * 1024


def key(secret: str) -> bytes:
    """The signing key of a `whsec_<base64>` secret; anything else is a DeliveryError."""
    if not secret.startswith(PREFIX):
        raise DeliveryError(
            "delivery_config.secret is not usable: Standard Webhooks signatures need a secret "
            "of the form whsec_<base64> (e.g. whsec_ followed by 32 random bytes in base64)"
        )
    try:
        decoded = base64.b64decode(secret[len(PREFIX) :] + "==", validate=False)
    except (binascii.Error, ValueError):
        raise DeliveryError(
            "delivery_config.secret is not usable: the part after whsec_ is not base64"
        ) from None
    if len(decoded) < 16:
        raise DeliveryError(
            "delivery_config.secret is not usable: a whsec_ secret needs at least 16 bytes"
        )
    return decoded


def headers(
    secret: str, message_id: str, parts: Iterable[bytes], timestamp: int | None = None
) -> dict[str, str]:
    """The three headers for a body given as its parts, in order."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    mac = hmac.new(key(secret), f"{message_id}.{stamp}.".encode(), hashlib.sha256)
    for part in parts:
        mac.update(part)
    return {
        ID_HEADER: message_id,
        TIMESTAMP_HEADER: stamp,
        SIGNATURE_HEADER: "v1," + base64.b64encode(mac.digest()).decode(),
    }


def file_parts(head: bytes, path: Path, tail: bytes) -> Iterable[bytes]:
    """A multipart body's parts, the file read in chunks (never held in memory)."""
    yield head
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            yield chunk
    yield tail
