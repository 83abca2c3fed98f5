"""Reading requests: ids from paths (positive integers that fit the store's BIGINT columns) and
JSON object bodies."""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

from aiohttp import web

MAX_ID = 2**63 - 1


def path_id(request: web.Request, name: str) -> int:
    """The path parameter `name` as an id; a 400 envelope (via the middleware) otherwise."""
    raw = request.match_info[name]
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_ID:
        raise web.HTTPBadRequest(reason=f"bad {name}", text=f"{name} must be a positive integer")
    return int(raw)


async def json_object(request: web.Request, *, known: Collection[str] = ()) -> dict[str, Any]:
    """The request's body as a JSON object (no body: empty); with `known`, a key outside it is
    a 400 naming the key. Bad JSON or another JSON value is a 400 too (via the middleware)."""
    if not request.can_read_body:
        return {}
    try:
        body = json.loads(await request.text() or "{}")
    except ValueError as exc:
        raise web.HTTPBadRequest(reason="bad body", text=f"body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(reason="bad body", text="body must be a JSON object")
    unknown = sorted(set(body) - set(known)) if known else []
    if unknown:
        expected = ", ".join(repr(key) for key in known)
        raise web.HTTPBadRequest(
            reason="bad body", text=f"{unknown[0]}: unknown key (expected {expected})"
        )
    return body
