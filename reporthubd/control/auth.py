"""Bearer tokens for the control plane.

The token file holds one token per line (blank lines and `#` comments ignored), so a new token can
be added before the old one is removed: rotation without downtime. It is re-read on reload.
Tokens are compared in constant time against every configured token. Without a token file (only
allowed on a loopback address) every path is open.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

from aiohttp import web

from reporthubd import secrets
from reporthubd.control import envelope

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

HEALTH_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def _console_shell(request: web.Request) -> bool:
    """The console's shell and static files hold no data: a browser loads them without a
    token, and their script sends the token on every call for data (control/console.py)."""
    path = request.path
    shell = path == "/console" or path.startswith("/console/")
    return shell and request.method in ("GET", "HEAD")


class TokenFileError(Exception):
    pass


def read_tokens(path: str) -> tuple[str, ...]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise TokenFileError(f"control.token_file {path}: {exc.strerror}") from None
    tokens = tuple(
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    )
    if not tokens:
        raise TokenFileError(f"control.token_file {path}: no token in the file")
    for token in tokens:
        secrets.remember(token)
    return tokens


class TokenGate:
    """Holds the current tokens; `middleware` enforces them."""

    def __init__(
        self, tokens: Iterable[str] = (), *, open_paths: frozenset[str] = HEALTH_PATHS
    ) -> None:
        self._tokens = tuple(token.encode() for token in tokens)
        self.open_paths = open_paths

    @property
    def enabled(self) -> bool:
        return bool(self._tokens)

    def replace(self, tokens: Iterable[str]) -> None:
        self._tokens = tuple(token.encode() for token in tokens)

    def allows(self, presented: str) -> bool:
        candidate = presented.encode()
        matched = False
        for token in self._tokens:  # no early exit: the time does not depend on which matched
            matched |= hmac.compare_digest(candidate, token)
        return matched

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not self._tokens or request.path in self.open_paths or _console_shell(request):
            return await handler(request)
        header = request.headers.get("Authorization", "")
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            response = envelope.error(
                "authentication required", "send Authorization: Bearer <token>", status=401
            )
            response.headers["WWW-Authenticate"] = 'Bearer realm="reporthubd"'
            return response
        if not self.allows(presented.strip()):
            return envelope.error("forbidden", "the token is not valid", status=403)
        return await handler(request)
