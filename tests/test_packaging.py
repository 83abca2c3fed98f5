"""Packaging facts: the systemd unit verifies, optional drivers are not imported at start-up."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests import servers

REPO = Path(__file__).resolve().parent.parent
OPTIONAL = (
    "oracledb",
    "aioodbc",
    "pyodbc",
    "pymongo",
    "google.cloud.bigquery",
    "snowflake",
    "reportlab",
    "pandas",
    "openpyxl",
    "xlsxwriter",
)


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        servers.unavailable("systemd-analyze not installed (Debian package systemd)")
    executable = shutil.which("reporthubd") or str(Path(sys.executable).parent / "reporthubd")
    unit = (REPO / "systemd" / "reporthubd.service").read_text()
    for required in (
        "Type=notify",
        "NotifyAccess=main",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "WatchdogSec=",
        "Restart=on-failure",
        "StateDirectory=reporthubd",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "RestrictAddressFamilies=",
        "CapabilityBoundingSet=\n",
        "User=reporthubd",
    ):
        assert required in unit, required
    copy = tmp_path / "reporthubd.service"
    copy.write_text(unit.replace("/usr/local/bin/reporthubd", executable))
    result = subprocess.run(
        [str(analyze), "verify", str(copy)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "reporthubd.service" not in result.stderr, result.stderr  # no warnings about the unit


def test_stop_timeout_is_longer_than_the_default_drain_grace() -> None:
    from reporthubd.config import ExecutionSettings

    unit = (REPO / "systemd" / "reporthubd.service").read_text()
    stop = next(line for line in unit.splitlines() if line.startswith("TimeoutStopSec="))
    assert int(stop.split("=")[1].rstrip("s")) > ExecutionSettings().drain_grace_seconds


def test_optional_drivers_are_not_imported_by_the_daemon(tmp_path: Path) -> None:
    """Build the daemon and its CLI as `reporthubd run` does; no optional library is loaded."""
    code = f"""
import sys
from reporthubd import cli, daemon
from reporthubd.config import load_settings
d = daemon.Daemon(load_settings(None, environ={{}}))
loaded = [m for m in {OPTIONAL!r} if m in sys.modules]
print(loaded)
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]", result.stdout
