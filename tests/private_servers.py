"""Private server instances a test may stop and restart (never the shared ones)."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from tests import servers


class PrivateMariaDB:
    """A throwaway MariaDB on a free port with its own data directory (TESTING.md recipe)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.port = servers.free_port()
        self.socket = directory / "mysqld.sock"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mysql://root@127.0.0.1:{self.port}/rh_private"

    def install(self) -> None:
        if not shutil.which("mariadb-install-db") or not Path("/usr/sbin/mariadbd").exists():
            servers.unavailable("mariadb-install-db / mariadbd not installed")
        subprocess.run(
            [
                "mariadb-install-db",
                "--no-defaults",
                f"--datadir={self.dir / 'data'}",
                "--user=root",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "/usr/sbin/mariadbd",
                "--no-defaults",
                "--user=root",
                f"--datadir={self.dir / 'data'}",
                f"--socket={self.socket}",
                f"--pid-file={self.dir / 'mysqld.pid'}",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                "--skip-name-resolve",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=64M",
                f"--log-error={self.dir / 'error.log'}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ping = subprocess.run(
                ["mariadb-admin", "--no-defaults", f"--socket={self.socket}", "-uroot", "ping"],
                capture_output=True,
            )
            if ping.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError(f"private MariaDB did not start: {(self.dir / 'error.log').read_text()}")

    def create_database(self) -> None:
        subprocess.run(
            [
                "mariadb",
                "--no-defaults",
                f"--socket={self.socket}",
                "-uroot",
                "-e",
                "CREATE DATABASE IF NOT EXISTS rh_private",
            ],
            check=True,
            timeout=30,
        )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=60)
        self.proc = None
