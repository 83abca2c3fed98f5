"""Configuration: one report naming every problem, exit code 2, environment overrides."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from reporthubd import config_reference
from reporthubd.config import ConfigError, EnvRef, load_settings

REPO = Path(__file__).resolve().parent.parent

BROKEN = """\
[store]
url = "sqlite:///store.db"
colour = "blue"

[execution]
max_concurrent_executions = "ten"
workspace = = "/tmp/x"

[control]
listen = "127.0.0.1:99999"
"""


def test_every_problem_is_reported_with_its_key_and_line(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(BROKEN)
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    problems = {(p.where, p.line) for p in caught.value.problems}
    assert ("file", 7) in problems  # the syntax error
    assert ("store.colour", 3) in problems  # the unknown key
    assert ("execution.max_concurrent_executions", 6) in problems  # the wrong type
    assert ("control.listen", 10) in problems  # the bad listen address
    assert len(caught.value.problems) == 4
    text = str(caught.value)
    assert "syntax error" in text and "unknown key" in text and "port must be 1-65535" in text


def test_cli_exits_2_and_prints_all_four(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(BROKEN)
    for command in (["run"], ["check"], ["db", "upgrade"]):
        result = subprocess.run(
            [sys.executable, "-m", "reporthubd", *command, "-c", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2, result.stderr
        for fragment in ("store.colour", "max_concurrent_executions", "control.listen", "line 7"):
            assert fragment in result.stderr


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[execution]\nmax_concurrent_executions = 3\n[logging]\nlevel = "INFO"\n')
    settings = load_settings(
        path,
        environ={
            "REPORTHUBD_EXECUTION_MAX_CONCURRENT_EXECUTIONS": "7",
            "REPORTHUBD_LOGGING_LEVEL": "debug",
            "REPORTHUBD_STORE_PASSWORD": '{env = "STORE_PW"}',
            "REPORTHUBD_CONFIG": "/ignored",
            "UNRELATED": "x",
        },
    )
    assert settings.execution.max_concurrent_executions == 7
    assert settings.logging.level == "DEBUG"
    assert settings.store.password == EnvRef(env="STORE_PW")


def test_bad_environment_values_name_the_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(
            None,
            environ={
                "REPORTHUBD_EXECUTION_BATCH_SIZE": "lots",
                "REPORTHUBD_STORE_NOPE": "1",
            },
        )
    text = str(caught.value)
    assert "REPORTHUBD_EXECUTION_BATCH_SIZE" in text and "REPORTHUBD_STORE_NOPE" in text


def test_non_loopback_listen_needs_a_token_file() -> None:
    with pytest.raises(ConfigError, match="token_file is required"):
        load_settings(None, environ={"REPORTHUBD_CONTROL_LISTEN": "0.0.0.0:8000"})
    settings = load_settings(
        None,
        environ={
            "REPORTHUBD_CONTROL_LISTEN": "0.0.0.0:8000",
            "REPORTHUBD_CONTROL_TOKEN_FILE": "/etc/reporthubd/tokens",
        },
    )
    assert settings.control.token_file == "/etc/reporthubd/tokens"


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("STORE_URL", "oracle://x/y", "must start with"),
        ("SCHEDULER_TIMEZONE", "Mars/Olympus", "unknown IANA time zone"),
        ("CONTROL_LISTEN", "localhost", "must be host:port"),
        ("LOGGING_FORMAT", "xml", "logging.format"),
    ],
)
def test_bad_values_are_explained(key: str, value: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        load_settings(None, environ={f"REPORTHUBD_{key}": value})


def test_example_file_is_generated_from_the_settings_and_every_setting_is_documented() -> None:
    assert config_reference.undocumented() == []
    example = (REPO / "config.toml.example").read_text(encoding="utf-8")
    assert example == config_reference.render_example(), (
        "config.toml.example is stale: "
        "run python -m reporthubd.config_reference > config.toml.example"
    )
    # The example, as shipped, is itself a valid configuration.
    path = REPO / "config.toml.example"
    load_settings(path, environ={})


def test_markdown_reference_is_current() -> None:
    current = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert current == config_reference.render_markdown(), (
        "docs/configuration.md is stale: "
        "run python -m reporthubd.config_reference --markdown > docs/configuration.md"
    )
