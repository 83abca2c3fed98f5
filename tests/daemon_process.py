"""A real `reporthubd run` subprocess with a notify socket owned by the test (systemd's side)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests import servers


class NotifySocket:
    """The datagram socket systemd would own: collects what the daemon sends."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "notify.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.messages: list[str] = []

    def wait_for(self, line: str, timeout: float = 20.0) -> list[str]:
        """Read datagrams until one contains `line`; return every message read so far."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(4096).decode()
            except TimeoutError:
                break
            self.messages.append(data)
            if line in data.splitlines():
                return self.messages
        raise AssertionError(f"{line!r} not received within {timeout}s; got {self.messages}")

    def close(self) -> None:
        self.sock.close()


def write_config(
    directory: Path, store_url: str, **sections: dict[str, object]
) -> tuple[Path, int]:
    port = servers.free_port()
    body = {
        "store": {"url": store_url},
        "control": {"listen": f"127.0.0.1:{port}"},
        "execution": {"workspace": str(directory / "workspace"), "drain_grace_seconds": 5.0},
        "logging": {"format": "json", "level": "INFO"},
    }
    for name, values in sections.items():
        body.setdefault(name, {}).update(values)
    lines = []
    for name, values in body.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
        lines.append("")
    path = directory / "config.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path, port


class DaemonProcess:
    def __init__(self, config: Path, *, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.log_path = config.parent / f"daemon-{time.monotonic_ns()}.log"
        self._log = self.log_path.open("wb")
        full_env = {**os.environ, **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "reporthubd", "run", "-c", str(config)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=full_env,
        )

    def signal(self, signum: signal.Signals) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._log.close()


def call(
    port: int,
    path: str,
    *,
    method: str = "GET",
    body: object | None = None,
    token: str | None = None,
    timeout: float = 10.0,
) -> tuple[int, dict[str, object]]:
    """One request to a daemon's control plane; returns (status, decoded JSON envelope)."""
    import urllib.error
    import urllib.request

    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())
