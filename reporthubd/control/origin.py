"""Cross-site requests refused: a browser on another site may not call an unsafe method.

A browser says where a request comes from: `Sec-Fetch-Site` (cross-site, same-site,
same-origin, none) and, on every POST, `Origin`. A request to an unsafe method (anything but
GET, HEAD, OPTIONS) is refused with 403 when `Sec-Fetch-Site` is neither `same-origin` nor
`none` (typed by the user), or when its `Origin` is not this very host. Clients that are not
browsers (curl, the command line, generated clients) send neither header and are unaffected.
The console never relies on this alone: its actions also need the token in a header, which a
foreign page cannot set on a request to this origin.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from reporthubd.control import envelope

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ALLOWED_FETCH_SITES = frozenset({"same-origin", "none"})


def cross_site_reason(request: web.Request) -> str | None:
    """Why `request` counts as cross-site, or None."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site.lower() not in ALLOWED_FETCH_SITES:
        return f"Sec-Fetch-Site is {site!r}"
    origin = request.headers.get("Origin")
    if origin is not None:
        expected = f"{request.scheme}://{request.host}"
        forwarded = request.headers.get("X-Forwarded-Proto")
        allowed = {expected} | ({f"{forwarded}://{request.host}"} if forwarded else set())
        if origin not in allowed:
            return f"Origin {origin[:200]!r} is not this host"
    return None


@web.middleware
async def refuse_cross_site(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method not in SAFE_METHODS:
        reason = cross_site_reason(request)
        if reason is not None:
            return envelope.error(
                "cross-site request refused",
                f"{reason}: a page of another site may not act on this daemon",
                status=403,
            )
    return await handler(request)
