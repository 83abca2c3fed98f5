"""The one generator of execution ids (and of every other id reporthubd makes up)."""

from __future__ import annotations

import os
import time
import uuid


def new_id() -> str:
    """A UUID, version 7 (time-ordered), as text: a burst of claims appends to the primary-key
    index instead of scattering random inserts over it, and ids sort by creation time."""
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (millis & (2**48 - 1)) << 80 | 0x7 << 76 | (rand >> 62 & 0xFFF) << 64
    value |= 0b10 << 62 | rand & (2**62 - 1)
    return str(uuid.UUID(int=value))
