"""Bearer tokens: 401 without, 403 wrong, either line of a two-token file, rotation on reload."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from reporthubd.control.auth import TokenFileError, TokenGate, read_tokens
from tests.daemon_process import DaemonProcess, NotifySocket, call, write_config

PROTECTED = "/api/no-such-endpoint"  # auth is decided before routing: unknown paths leak nothing


def test_tokens_from_a_two_line_file_and_rotation(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("# rotation: old and new\nold-token-1111\n\nnew-token-2222\n")
    config, port = write_config(
        tmp_path, f"sqlite:///{tmp_path / 'store.db'}", control={"token_file": str(tokens)}
    )
    notify = NotifySocket(tmp_path)
    daemon = DaemonProcess(config, env={"NOTIFY_SOCKET": str(notify.path)})
    try:
        notify.wait_for("READY=1")
        status, body = call(port, PROTECTED)
        assert status == 401 and body["status"] == "error"
        assert call(port, PROTECTED, token="wrong-token")[0] == 403
        assert call(port, PROTECTED, token="old-token-1111")[0] == 404  # authenticated, then routed
        assert call(port, PROTECTED, token="new-token-2222")[0] == 404
        assert call(port, "/healthz")[0] == 200  # open by default
        assert call(port, "/readyz")[0] == 200

        tokens.write_text("new-token-2222\n")  # retire the old token
        daemon.signal(signal.SIGHUP)
        notify.wait_for("READY=1")
        assert call(port, PROTECTED, token="old-token-1111")[0] == 403
        assert call(port, PROTECTED, token="new-token-2222")[0] == 404
    finally:
        daemon.stop()
        notify.close()
    assert "old-token-1111" not in daemon.output() and "new-token-2222" not in daemon.output()


def test_health_can_be_closed_too(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("only-token-3333\n")
    config, port = write_config(
        tmp_path,
        f"sqlite:///{tmp_path / 'store.db'}",
        control={"token_file": str(tokens), "open_health": False},
    )
    notify = NotifySocket(tmp_path)
    daemon = DaemonProcess(config, env={"NOTIFY_SOCKET": str(notify.path)})
    try:
        notify.wait_for("READY=1")
        assert call(port, "/healthz")[0] == 401
        assert call(port, "/healthz", token="only-token-3333")[0] == 200
    finally:
        daemon.stop()
        notify.close()


def test_gate_compares_every_token() -> None:
    gate = TokenGate(["a" * 32, "b" * 32])
    assert gate.allows("a" * 32) and gate.allows("b" * 32)
    assert not gate.allows("a" * 31) and not gate.allows("")


def test_an_empty_or_missing_token_file_is_an_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("# nothing\n\n")
    with pytest.raises(TokenFileError, match="no token"):
        read_tokens(str(empty))
    with pytest.raises(TokenFileError, match="No such file"):
        read_tokens(str(tmp_path / "missing"))


def test_daemon_with_an_unreadable_token_file_does_not_start(tmp_path: Path) -> None:
    config, _ = write_config(
        tmp_path,
        f"sqlite:///{tmp_path / 'store.db'}",
        control={"token_file": str(tmp_path / "missing")},
    )
    daemon = DaemonProcess(config)
    try:
        assert daemon.wait(timeout=30) == 1
    finally:
        daemon.stop()
    assert "token_file" in daemon.output()
