"""The seed's deployment as a drop-in (issue 22): its `.env` read as is, its two ports served by
one daemon, its execute path, its password kept out of every log line and answer.

The mapping and its precedence are tested on `config.load` without a server; the acceptance
runs `reporthubd db upgrade`, `run` and `check` in a folder holding nothing but the seed's
`.env`, against a fresh MariaDB database reached through a user with a password.
"""

from __future__ import annotations

import os
import secrets
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from reporthubd import seed_env
from reporthubd.config import ConfigError, StoreSettings, load
from reporthubd.store import schema
from reporthubd.store.database import Store
from tests import servers
from tests.daemon_process import NotifySocket, call

REPO = Path(__file__).resolve().parent.parent

# The seed README's example, its names and layout; host, ports and secrets filled in per test.
SEED_ENV = """\
# Database Configuration (shared with Go API)
DB_HOST={host}
DB_PORT={port}
DB_USER={user}
DB_PASSWORD={password}
DB_NAME={database}

# Execution Engine Configuration
EXECUTION_API_PORT={exec_port}
MAX_CONCURRENT_EXECUTIONS=10
QUERY_TIMEOUT_SECONDS=300

# Scheduler Configuration
SCHEDULER_API_PORT={sched_port}
SCHEDULER_TIMEZONE=UTC
SCHEDULER_CHECK_INTERVAL_SECONDS=60
"""


def _seed_env(folder: Path, **values: object) -> Path:
    filled = {
        "host": "db.example.internal",
        "port": 3306,
        "user": "report_user",
        "password": "your_password",
        "database": "lab",
        "exec_port": 8000,
        "sched_port": 8001,
        **values,
    }
    path = folder / ".env"
    path.write_text(SEED_ENV.format(**filled), encoding="utf-8")
    return path


# -- the mapping, without a server --------------------------------------------------------------


def test_the_seed_env_maps_onto_settings_with_their_sources(tmp_path: Path) -> None:
    env = _seed_env(tmp_path)
    loaded = load(None, {}, env_file=env)
    settings = loaded.settings
    assert settings.store.url == "mysql://report_user@db.example.internal:3306/lab"
    assert settings.store.password == "your_password"
    assert settings.control.listen == "127.0.0.1:8000"
    assert settings.control.extra_listen == ["127.0.0.1:8001"]
    assert settings.execution.max_concurrent_executions == 10
    assert settings.execution.query_timeout_seconds == 300
    assert settings.scheduler.timezone == "UTC"
    assert settings.scheduler.reload_interval_seconds == 60
    assert loaded.sources["store.url"] == f"DB_HOST, DB_PORT, DB_USER, DB_NAME in {env}"
    assert loaded.sources["store.password"] == f"DB_PASSWORD in {env}"
    assert loaded.sources["control.extra_listen"] == f"SCHEDULER_API_PORT in {env}"
    assert loaded.sources["store.pool_size"] == "default"
    assert loaded.notices == ()
    # Every seed name of the mapping is documented in the operators' guide.
    guide = (REPO / "docs" / "operators.md").read_text(encoding="utf-8")
    section = guide.split("## Coming from the two-service design", 1)[1]
    for mapped in seed_env.MAPPING:
        assert f"`{mapped.setting}`" in section
        for name in mapped.names:
            assert f"`{name}`" in section


def test_the_working_directory_env_file_is_read_unless_turned_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _seed_env(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert load(None, {}).settings.store.url.startswith("mysql://report_user@")
    assert load(None, {"REPORTHUBD_ENV_FILE": ""}).settings.store.url.startswith("sqlite:")
    other = tmp_path / "other.env"
    other.write_text("DB_HOST=h\nDB_USER=u\nDB_NAME=n\n")
    assert load(None, {"REPORTHUBD_ENV_FILE": str(other)}).settings.store.url == (
        "mysql://u@h:3306/n"
    )


def test_explicit_settings_win_over_the_seed_names_with_a_notice(tmp_path: Path) -> None:
    env = _seed_env(tmp_path)
    config = tmp_path / "config.toml"
    config.write_text(
        '[scheduler]\ntimezone = "Europe/Berlin"\n\n[control]\nlisten = "[::1]:9000"\n'
    )
    environ = {
        "REPORTHUBD_EXECUTION_MAX_CONCURRENT_EXECUTIONS": "3",
        "SCHEDULER_CHECK_INTERVAL_SECONDS": "15",  # exported: wins over the .env line
        "DB_PASWORD": "typo",
    }
    loaded = load(config, environ, env_file=env)
    assert loaded.settings.scheduler.timezone == "Europe/Berlin"
    assert loaded.settings.control.listen == "[::1]:9000"
    assert loaded.settings.execution.max_concurrent_executions == 3
    assert loaded.settings.scheduler.reload_interval_seconds == 15
    assert loaded.sources["scheduler.timezone"] == f"{config} line 2"
    assert loaded.sources["execution.max_concurrent_executions"] == (
        "REPORTHUBD_EXECUTION_MAX_CONCURRENT_EXECUTIONS"
    )
    assert loaded.sources["scheduler.reload_interval_seconds"] == (
        "SCHEDULER_CHECK_INTERVAL_SECONDS"
    )
    notices = "\n".join(loaded.notices)
    assert f"scheduler.timezone: 'Europe/Berlin' from {config} line 2 wins over" in notices
    assert f"control.listen: '[::1]:9000' from {config} line 5 wins over EXECUTION_API_PORT" in (
        notices
    )
    assert "DB_PASWORD: not a variable reporthubd reads" in notices
    assert "typo" not in notices


def test_a_store_named_two_ways_is_a_conflict_naming_both_sources(tmp_path: Path) -> None:
    env = _seed_env(tmp_path, password="s3cret-pass")
    config = tmp_path / "config.toml"
    config.write_text('[store]\nurl = "mysql://report_user:other-pass@db2.example.internal/lab"\n')
    with pytest.raises(ConfigError) as caught:
        load(config, {}, env_file=env)
    text = str(caught.value)
    assert f"store.url: {config} line 2 names mysql://report_user@db2.example.internal/lab" in text
    assert f"DB_HOST, DB_PORT, DB_USER, DB_NAME in {env} name" in text
    assert "(DB_HOST differs)" in text
    assert f"store.password: store.url ({config} line 2) holds a password, and DB_PASSWORD" in text
    assert "s3cret-pass" not in text and "other-pass" not in text
    # The same store named both ways agrees; the explicit one is the source.
    config.write_text('[store]\nurl = "mysql://report_user@DB.example.internal:3306/lab"\n')
    loaded = load(config, {}, env_file=env)
    assert loaded.sources["store.url"] == f"{config} line 2"
    assert loaded.settings.store.password == "s3cret-pass"
    # REPORTHUBD_STORE_URL is as explicit as the file.
    with pytest.raises(ConfigError, match=r"REPORTHUBD_STORE_URL names sqlite:///x\.db"):
        load(None, {"REPORTHUBD_STORE_URL": "sqlite:///x.db"}, env_file=env)


def test_an_incomplete_or_malformed_seed_is_reported(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("DB_HOST=h\nDB_PASSWORD=pw-123456\nEXECUTION_API_PORT=eighty\nnot a line\n")
    with pytest.raises(ConfigError) as caught:
        load(None, {}, env_file=env)
    text = str(caught.value)
    assert "set, but not DB_USER, DB_NAME: the seed's store needs" in text
    assert f"EXECUTION_API_PORT in {env}: must be a port number 1-65535 (got 'eighty')" in text
    assert f"env file {env} (line 4): not NAME=value (line ignored)" in text
    assert "pw-123456" not in text
    env.write_text("SCHEDULER_TIMEZONE=Mars/Olympus\n")
    with pytest.raises(ConfigError, match=r"scheduler.timezone \(from SCHEDULER_TIMEZONE in "):
        load(None, {}, env_file=env)


def test_every_address_beyond_loopback_needs_a_token(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"token_file is required when extra_listen"):
        load(None, {"REPORTHUBD_CONTROL_EXTRA_LISTEN": '["0.0.0.0:8001"]'}, env_file=None)
    with pytest.raises(ConfigError, match="an address is given twice"):
        load(None, {"EXECUTION_API_PORT": "8000", "SCHEDULER_API_PORT": "8000"}, env_file=None)


# -- the acceptance: a folder holding only the seed's .env --------------------------------------


@dataclass
class SeedDeployment:
    folder: Path
    env: Path
    database: str
    password: str
    exec_port: int
    sched_port: int
    workspace: Path

    def environment(self, **extra: str) -> dict[str, str]:
        # The one thing set beside the .env: where produced files go, so that the test does not
        # fill the machine's /var/lib/reporthubd (the seed has no variable for it).
        return _clean_environment(REPORTHUBD_EXECUTION_WORKSPACE=str(self.workspace), **extra)

    def command(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "reporthubd", *args],
            cwd=self.folder,
            env=self.environment(),
            capture_output=True,
            text=True,
            timeout=60,
        )


def _clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment without any reporthubd or seed setting."""
    names = {name for mapped in seed_env.MAPPING for name in mapped.names}
    kept = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("REPORTHUBD_", "DB_")) and name not in names
    }
    return {**kept, **extra}


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[SeedDeployment]:
    database = servers.create_database("mariadb", tmp_path)
    user = f"rh_seed_{secrets.token_hex(3)}"
    password = f"Seed-{secrets.token_hex(8)}"
    servers._mariadb_admin(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'")
    try:
        servers._mariadb_admin(f"GRANT ALL PRIVILEGES ON `{database.name}`.* TO '{user}'@'%'")
        folder = tmp_path / "app"
        folder.mkdir()
        exec_port = servers.free_port()
        sched_port = servers.free_port()
        while sched_port == exec_port:
            sched_port = servers.free_port()
        env = _seed_env(
            folder,
            host=servers.MARIADB_HOST,
            port=servers.MARIADB_PORT,
            user=user,
            password=password,
            database=database.name,
            exec_port=exec_port,
            sched_port=sched_port,
        )
        yield SeedDeployment(
            folder=folder,
            env=env,
            database=database.name,
            password=password,
            exec_port=exec_port,
            sched_port=sched_port,
            workspace=tmp_path / "workspace",
        )
    finally:
        servers._mariadb_admin(f"DROP USER IF EXISTS '{user}'@'%'")
        database.drop()


async def _define_a_report(deployment: SeedDeployment, source: Path) -> tuple[int, int]:
    """A report and its schedule, inserted as the Go API would (through the test's own root
    connection: the daemon only has the .env)."""
    with sqlite3.connect(source) as db:
        db.execute("CREATE TABLE sales (region TEXT, amount INTEGER)")
        db.executemany("INSERT INTO sales VALUES (?, ?)", [("north", 3), ("south", 5)])
    root = f"mysql://root@{servers.MARIADB_HOST}:{servers.MARIADB_PORT}/{deployment.database}"
    store = Store(StoreSettings(url=root))
    await store.start()
    try:
        async with store.engine.begin() as conn:
            datasource = (
                await conn.execute(
                    sa.insert(schema.datasources).values(
                        name="sales-file", type="sqlite", connection_config={"path": str(source)}
                    )
                )
            ).inserted_primary_key[0]
            config = (
                await conn.execute(
                    sa.insert(schema.configs).values(
                        name="sales",
                        datasource_id=datasource,
                        query_text="SELECT region, amount FROM sales ORDER BY region",
                        output_format="csv",
                    )
                )
            ).inserted_primary_key[0]
            schedule = (
                await conn.execute(
                    sa.insert(schema.schedules).values(
                        config_id=config, cron_expression="0 9 * * *"
                    )
                )
            ).inserted_primary_key[0]
    finally:
        await store.stop()
    """The report config's id and its schedule's."""
    return int(config), int(schedule)


async def test_the_seed_env_alone_runs_the_daemon_on_both_ports(
    deployment: SeedDeployment, tmp_path: Path
) -> None:
    folder = deployment.folder
    upgraded = deployment.command("db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
    config_id, schedule_id = await _define_a_report(deployment, tmp_path / "sales.db")

    notify = NotifySocket(tmp_path)
    log_path = tmp_path / "daemon.log"
    with log_path.open("wb") as log_file:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "reporthubd", "run"],
            cwd=folder,
            env=deployment.environment(NOTIFY_SOCKET=str(notify.path)),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        answers: list[object] = []
        try:
            notify.wait_for("READY=1")
            exec_port, sched_port = deployment.exec_port, deployment.sched_port
            status, ran = call(
                exec_port,
                f"/api/execute/{config_id}",
                method="POST",
                body={"wait": 30},
                timeout=40,
            )
            answers.append(ran)
            assert status == 200, ran
            assert ran["status"] == "success"
            assert ran["data"]["status"] == "COMPLETED" and ran["data"]["row_count"] == 2  # type: ignore[index]

            status, jobs = call(sched_port, "/api/scheduler/jobs")
            answers.append(jobs)
            assert status == 200, jobs
            listed = [job["schedule_id"] for job in jobs["data"]["jobs"]]  # type: ignore[index]
            assert listed == [schedule_id]

            status, reloaded = call(sched_port, "/api/scheduler/reload", method="POST")
            answers.append(reloaded)
            assert status == 200, reloaded
            assert set(reloaded) == {"status", "message", "data"}
            assert reloaded["status"] == "success"

            status, alias = call(
                exec_port,
                f"/execution_engine/api/execute/{config_id}",
                method="POST",
                body={"wait": 30},
                timeout=40,
            )
            answers.append(alias)
            assert status == 200, alias
            assert alias["data"]["status"] == "COMPLETED"  # type: ignore[index]

            # The whole API on both ports, open without a token on loopback; errors enveloped.
            status, other_side = call(exec_port, "/api/scheduler/status")
            assert status == 200 and other_side["status"] == "success"
            status, missing = call(
                sched_port, "/execution_engine/api/execute/999999", method="POST"
            )
            answers.append(missing)
            assert status == 404 and missing["status"] == "error", missing
        finally:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(timeout=30)
            finally:
                if daemon.poll() is None:
                    daemon.kill()
                    daemon.wait(timeout=10)
                notify.close()
    log = log_path.read_text(encoding="utf-8", errors="replace")
    assert "control plane listening" in log and str(deployment.sched_port) in log
    assert deployment.password not in log, log
    assert deployment.password not in repr(answers)

    checked = deployment.command("check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    out = checked.stdout
    assert f'store.password = "***"  # DB_PASSWORD in {deployment.env}' in out
    assert f"# DB_HOST, DB_PORT, DB_USER, DB_NAME in {deployment.env}" in out
    assert f'control.extra_listen = ["127.0.0.1:{deployment.sched_port}"]' in out
    assert "store.pool_size = 5  # default" in out
    assert "execution.workspace = " in out and "# REPORTHUBD_EXECUTION_WORKSPACE" in out
    assert deployment.password not in out + checked.stderr

    conflicting = folder / "config.toml"
    conflicting.write_text('[store]\nurl = "sqlite:///elsewhere.db"\n')
    refused = deployment.command("check", "-c", str(conflicting))
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert f"{conflicting} line 2 names sqlite:///elsewhere.db" in refused.stderr
    assert f"DB_HOST, DB_PORT, DB_USER, DB_NAME in {deployment.env}" in refused.stderr
    assert deployment.password not in refused.stdout + refused.stderr


def test_tokens_hold_on_every_address(tmp_path: Path) -> None:
    token = "seed-token-" + secrets.token_hex(8)
    (tmp_path / "tokens").write_text(token + "\n")
    first, second = servers.free_port(), servers.free_port()
    config = tmp_path / "config.toml"
    config.write_text(
        f'[store]\nurl = "sqlite:///{tmp_path / "store.db"}"\n\n'
        f'[control]\nlisten = "127.0.0.1:{first}"\nextra_listen = ["127.0.0.1:{second}"]\n'
        f'token_file = "{tmp_path / "tokens"}"\n\n'
        f'[execution]\nworkspace = "{tmp_path / "workspace"}"\n'
    )
    notify = NotifySocket(tmp_path)
    daemon = subprocess.Popen(
        [sys.executable, "-m", "reporthubd", "run", "-c", str(config)],
        cwd=tmp_path,
        env=_clean_environment(NOTIFY_SOCKET=str(notify.path), REPORTHUBD_ENV_FILE=""),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        notify.wait_for("READY=1")
        for port in (first, second):
            status, refused = call(port, "/api/scheduler/status")
            assert status == 401 and refused["status"] == "error"
            status, _ = call(port, "/api/scheduler/status", token="wrong-token-123")
            assert status == 403
            status, allowed = call(port, "/api/scheduler/status", token=token)
            assert status == 200 and allowed["status"] == "success"
    finally:
        daemon.kill()
        daemon.wait(timeout=10)
        notify.close()
