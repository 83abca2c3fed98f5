"""A secret in scope never reaches a log line: DSNs, connection_config, exception messages."""

from __future__ import annotations

import io
import json
import logging

import pytest

from reporthubd import domain, logs, secrets
from reporthubd.config import LoggingSettings
from reporthubd.store import rows

PLANTED = "Pl4nted-S3cret-xyzzy"


@pytest.fixture
def captured() -> io.StringIO:
    stream = io.StringIO()
    logs.configure(LoggingSettings(format="json", level="DEBUG"), stream=stream)
    return stream


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_dsn_password_is_masked(captured: io.StringIO) -> None:
    log = logs.get("test")
    log.info("connecting", dsn=f"mysql://report:{PLANTED}@db.example:3306/lab")
    log.info(f"plain text postgresql://u:{PLANTED}@h/db in the event")  # noqa: G004 - on purpose
    out = captured.getvalue()
    assert PLANTED not in out
    assert "mysql://report:***@db.example:3306/lab" in out


def test_connection_config_secret_is_masked_everywhere(captured: io.StringIO) -> None:
    row = {
        "id": 1,
        "name": "warehouse",
        "type": "postgresql",
        "is_active": True,
        "connection_config": {"host": "db", "username": "u", "password": PLANTED},
        "max_concurrent_queries": None,
    }
    datasource = rows.datasource(row)  # reading the row registers its inline secrets
    log = logs.get("test", datasource_id=1)
    assert not isinstance(datasource, domain.RowError)
    log.info("datasource loaded", config=dict(datasource.connection_config))
    log.warning("driver said: authentication failed for password " + PLANTED)  # noqa: G003
    out = captured.getvalue()
    assert PLANTED not in out
    assert _lines(captured)[0]["config"] == {"host": "db", "username": "u", "password": "***"}


def test_exception_text_and_traceback_are_scrubbed(captured: io.StringIO) -> None:
    secrets.remember(PLANTED)
    log = logs.get("test")
    try:
        raise ConnectionError(f"login to db.example failed with {PLANTED}")
    except ConnectionError as exc:
        log.exception("query failed", error=exc)
    logging.getLogger("aiomysql").error("library message %s", PLANTED)
    out = captured.getvalue()
    assert PLANTED not in out
    assert "login to db.example failed with ***" in out
    assert len(_lines(captured)) == 2


def test_secret_references_are_resolved_and_remembered(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object, captured: io.StringIO
) -> None:
    monkeypatch.setenv("RH_TEST_SECRET", "from-env-" + PLANTED)
    assert secrets.resolve({"env": "RH_TEST_SECRET"}) == "from-env-" + PLANTED
    with pytest.raises(secrets.SecretError, match="RH_TEST_MISSING is not set"):
        secrets.resolve({"env": "RH_TEST_MISSING"})
    logs.get("test").info("value is from-env-" + PLANTED)
    assert PLANTED not in captured.getvalue()
