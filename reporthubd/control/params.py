"""Reading ids from request paths: positive integers that fit the store's BIGINT columns."""

from __future__ import annotations

from aiohttp import web

MAX_ID = 2**63 - 1


def path_id(request: web.Request, name: str) -> int:
    """The path parameter `name` as an id; a 400 envelope (via the middleware) otherwise."""
    raw = request.match_info[name]
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_ID:
        raise web.HTTPBadRequest(reason=f"bad {name}", text=f"{name} must be a positive integer")
    return int(raw)
