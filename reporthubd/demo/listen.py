"""The demo control plane's address: 127.0.0.1:8000, or a free port when 8000 is taken and no
`--listen` was given (an explicit address is used as given, or refused)."""

from __future__ import annotations

import socket

from reporthubd.config import parse_listen

DEFAULT_LISTEN = "127.0.0.1:8000"


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As the control plane binds (SO_REUSEADDR): a port in TIME_WAIT counts as free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


class ListenError(ValueError):
    """An unusable `--listen`; the message says why and what to do."""


def choose_listen(requested: str | None) -> tuple[str, str | None]:
    """The address to listen on and, when the default port was taken, a note saying so.
    An explicit `--listen` is used as given; ListenError when it is malformed or taken."""
    if requested is not None:
        try:
            host, port = parse_listen(requested)
        except ValueError as exc:
            raise ListenError(f"--listen: {exc}") from None
        if host.count(".") == 3 and not _port_free(host, port):
            raise ListenError(
                f"--listen: {requested} is taken; pick another port, or leave --listen out "
                f"to use {DEFAULT_LISTEN} or a free port"
            )
        return requested, None
    host, port = parse_listen(DEFAULT_LISTEN)
    if _port_free(host, port):
        return DEFAULT_LISTEN, None
    other = _free_port(host)
    return f"{host}:{other}", f"port {port} is taken, so the demo listens on {other} instead"
