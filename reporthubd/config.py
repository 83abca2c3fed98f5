"""Settings: a TOML file plus environment overrides, validated into one frozen model.

Loading never stops at the first problem: it gathers every syntax error, unknown key, wrong type
and bad value, each with its key path and (where it can be found) its line in the file, and
raises `ConfigError` carrying all of them. The CLI prints them and exits 2.

Environment overrides: `REPORTHUBD_<SECTION>_<KEY>` (upper case) overrides `<section>.<key>`,
e.g. `REPORTHUBD_STORE_URL` or `REPORTHUBD_EXECUTION_MAX_CONCURRENT_EXECUTIONS`. The value is
read as a TOML value when it parses as one (`10`, `true`, `"text"`, `{env = "X"}`), otherwise as
a plain string. Section names hold no underscore, so the split is unambiguous.

The seed's deployment variables (`DB_HOST`, `EXECUTION_API_PORT`, ...: reporthubd/seed_env.py)
are read too, from the environment or a `.env` file. Precedence, highest first: `REPORTHUBD_*`
variables, the TOML file, the seed's names, the built-in defaults. `load` says where each
effective value came from (`reporthubd check` prints it); a seed value an explicit layer
overrides with another is a notice, and for the store a conflict (a problem naming both sources).
`.env` lines count as environment lines that an exported variable overrides.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from reporthubd import seed_env
from reporthubd.notify.settings import NotificationSettings

ENV_PREFIX = "REPORTHUBD_"
DEFAULT_CONFIG_PATH = Path("/etc/reporthubd/config.toml")
CONFIG_ENV = "REPORTHUBD_CONFIG"


class EnvRef(BaseModel):
    """A secret read from an environment variable at the moment it is needed."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)
    env: str


class FileRef(BaseModel):
    """A secret read from a file (trailing newline stripped) at the moment it is needed."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)
    file: str


SecretSetting = str | EnvRef | FileRef


class _Section(BaseModel):
    # Attribute docstrings become field descriptions: config.toml.example is generated from them
    # (reporthubd/config_reference.py), and a test fails when a setting has none.
    model_config = ConfigDict(
        frozen=True, extra="forbid", strict=True, use_attribute_docstrings=True
    )


class StoreSettings(_Section):
    """The store: the shared database holding report definitions and execution history."""

    url: str = "sqlite:////var/lib/reporthubd/store.db"
    """Where the store is: mysql://user@host:3306/db, postgresql://user@host:5432/db,
    sqlite:///relative/path.db or sqlite:////absolute/path.db."""
    password: SecretSetting | None = None
    """Overrides any password in `url`; inline, {env = "NAME"} or {file = "/path"}."""
    pool_size: Annotated[int, Field(ge=1, le=100)] = 5
    """Connections kept open to a MySQL/PostgreSQL store."""
    connect_timeout_seconds: Annotated[float, Field(gt=0, le=300)] = 10.0
    """How long connecting to the store may take before it counts as unreachable."""
    lock_wait_timeout_seconds: Annotated[int, Field(ge=1, le=300)] = 5
    """How long one of the daemon's own store statements waits for a row lock before it fails
    (MySQL/MariaDB innodb_lock_wait_timeout, PostgreSQL lock_timeout): a node frozen while it
    holds a lock (a paused VM) cannot stall the other nodes' heartbeats and recoveries longer."""
    idle_transaction_timeout_seconds: Annotated[int, Field(ge=1, le=3600)] = 10
    """The store server ends one of the daemon's own sessions whose write transaction has been
    idle this long (MariaDB idle_write_transaction_timeout, PostgreSQL
    idle_in_transaction_session_timeout), releasing its row locks: a node frozen in the middle of
    a transaction (a paused VM) cannot keep the other nodes from recovering its runs. The daemon
    never leaves a transaction open across a wait, so only a frozen node is ever cut off.
    (MySQL has no such setting: there a frozen node's locks last until its connection drops.)"""
    auto_upgrade: bool | None = None
    """Run pending migrations at start. Unset: on for SQLite stores, off for server stores."""
    journal_path: str = ""
    """Where records of finished runs and delivery attempts wait while the store is unreachable
    (flushed in order when it answers again, also after a restart). Empty: `.store-journal.jsonl`
    in the workspace. One daemon per journal: give each node on a machine its own."""

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        scheme = value.split(":", 1)[0].split("+", 1)[0].lower()
        if scheme not in {"mysql", "mariadb", "postgresql", "postgres", "sqlite"}:
            raise ValueError(
                f"must start with mysql://, postgresql:// or sqlite:/// (got scheme {scheme!r})"
            )
        if scheme == "sqlite" and not value.startswith("sqlite:///"):
            raise ValueError("a SQLite url is sqlite:///relative/path or sqlite:////absolute/path")
        return value

    @property
    def backend(self) -> Literal["mysql", "postgresql", "sqlite"]:
        scheme = self.url.split(":", 1)[0].split("+", 1)[0].lower()
        if scheme in {"mysql", "mariadb"}:
            return "mysql"
        if scheme in {"postgresql", "postgres"}:
            return "postgresql"
        return "sqlite"

    @property
    def upgrades_automatically(self) -> bool:
        if self.auto_upgrade is None:
            return self.backend == "sqlite"
        return self.auto_upgrade


class SchedulerSettings(_Section):
    """The cron loop: time zone, missed fires, reloads, and this node in a cluster."""

    timezone: str = "UTC"
    """IANA zone for schedules whose own timezone is NULL."""
    misfire_grace_seconds: Annotated[int, Field(ge=0)] = 300
    """A fire missed by at most this long still runs (schedules may override it)."""
    run_all_limit: Annotated[int, Field(ge=1)] = 100
    """run_all catch-up: at most this many missed fires are run per schedule."""
    skipped_rows_limit: Annotated[int, Field(ge=1)] = 1000
    """Missed fires recorded one by one as SKIPPED rows per schedule and catch-up (the most
    recent); older ones are summarised by one more SKIPPED row at the oldest missed fire."""
    reload_interval_seconds: Annotated[float, Field(ge=1)] = 30.0
    """How often the store is checked for changed report definitions."""
    node_id: str = ""
    """This node's name in report_nodes and on its executions; empty: `<hostname>-<pid>`."""
    heartbeat_interval_seconds: Annotated[float, Field(gt=0)] = 10.0
    """How often this node refreshes its heartbeat and its running executions'."""
    node_lost_after_seconds: Annotated[float, Field(gt=0)] = 60.0
    """A running execution whose heartbeat is older than this is marked FAILED (node lost)."""
    recover_lost_executions: bool = True
    """Run a lost execution again (trigger_type recovery, next attempt): a schedule's run for the
    same fire (scheduled_for), a manual run with the same parameters."""
    backfill_max_days: Annotated[float, Field(gt=0)] = 366.0
    """A backfill's range (--from to --to) may span at most this many days."""
    wait_check_max_seconds: Annotated[float, Field(gt=0)] = 30.0
    """A run waiting for its dependencies or readiness probe is checked again after 1 s, 2 s,
    4 s, ... at most this long apart."""

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r}") from None
        return value

    @model_validator(mode="after")
    def _heartbeat_fits(self) -> SchedulerSettings:
        if self.node_lost_after_seconds <= 2 * self.heartbeat_interval_seconds:
            raise ValueError(
                "node_lost_after_seconds must be more than twice heartbeat_interval_seconds"
            )
        return self

    @property
    def effective_node_id(self) -> str:
        return self.node_id or f"{socket.gethostname()}-{os.getpid()}"


class ExecutionSettings(_Section):
    """Running reports: concurrency, timeouts, the workspace and how long files are kept."""

    max_concurrent_executions: Annotated[int, Field(ge=1, le=1000)] = 4
    """Executions running at once on this node; more wait in order, none is dropped."""
    query_timeout_seconds: Annotated[float, Field(gt=0)] = 300.0
    """Default query timeout for report configs without timeout_seconds."""
    workspace: str = "/var/lib/reporthubd/workspace"
    """Directory holding one sub-directory of produced files per execution."""
    batch_size: Annotated[int, Field(ge=1, le=1_000_000)] = 5000
    """Rows fetched from a data source and handed to a writer at a time."""
    file_retention_hours: Annotated[float, Field(ge=0)] = 168.0
    """Produced files are removed this long after their execution finished."""
    execution_retention_days: Annotated[float, Field(ge=1)] = 90.0
    """Execution rows (and their delivery logs, and data-driven runs' audiences) older than this
    are pruned, with the settled rows of the daemon's ledgers about them (sent or given-up
    notices, decided waits, finished backfills and their fires, late fires)."""
    drain_grace_seconds: Annotated[float, Field(ge=0)] = 30.0
    """On SIGTERM: how long running executions may finish before they are cancelled."""
    retry_backoff_cap_minutes: Annotated[float, Field(gt=0)] = 60.0
    """Longest wait between two attempts of a delivery (backoff doubles from
    retry_interval_minutes up to this)."""
    retry_time_scale: Annotated[float, Field(gt=0, le=1)] = 1.0
    """Multiplies every delivery retry wait (interval and cap); keep 1 in production. Tests use
    a small value, e.g. 0.01 makes a 1-minute retry interval 0.6 seconds."""


class ControlSettings(_Section):
    """The HTTP control plane (status, triggers, health, metrics)."""

    listen: str = "127.0.0.1:8000"
    """host:port (IPv6 as [::1]:8000)."""
    extra_listen: list[str] = Field(default_factory=list)
    """More host:port addresses serving the same API, with the same tokens (the seed's
    SCHEDULER_API_PORT becomes one)."""
    token_file: str | None = None
    """One bearer token per line; required when `listen` or an `extra_listen` address is not a
    loopback address."""
    open_health: bool = True
    """Serve /healthz, /readyz and /metrics without a token."""
    unix_socket: str | None = None
    """Also listen on this Unix socket path (same API, same tokens)."""
    max_body_bytes: Annotated[int, Field(ge=1024)] = 1_048_576
    """Largest request body the control plane accepts."""

    @field_validator("listen")
    @classmethod
    def _valid_listen(cls, value: str) -> str:
        parse_listen(value)
        return value

    @field_validator("extra_listen")
    @classmethod
    def _valid_extra_listen(cls, value: list[str]) -> list[str]:
        for address in value:
            parse_listen(address)
        return value

    @property
    def addresses(self) -> list[str]:
        """Every TCP address served: `listen` first."""
        return [self.listen, *self.extra_listen]

    @model_validator(mode="after")
    def _token_beyond_loopback(self) -> ControlSettings:
        host, _ = parse_listen(self.listen)
        if not is_loopback(host) and not self.token_file:
            raise ValueError(
                f"token_file is required when listen ({self.listen}) is not a loopback address"
            )
        for address in self.extra_listen:
            if not is_loopback(parse_listen(address)[0]) and not self.token_file:
                raise ValueError(
                    f"token_file is required when extra_listen ({address}) is not a loopback "
                    "address"
                )
        if len(set(self.addresses)) != len(self.addresses):
            raise ValueError(
                f"an address is given twice in listen and extra_listen: {', '.join(self.addresses)}"
            )
        return self


class LoggingSettings(_Section):
    """Structured logs on stderr (journald keeps them under systemd)."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """Lowest level written."""
    format: Literal["auto", "json", "console"] = "auto"
    """auto: console on a TTY, JSON lines otherwise."""

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class SmtpSettings(_Section):
    """Defaults for email deliveries."""

    host: str = "localhost"
    """SMTP server for email deliveries (a delivery's `smtp` object may override any key)."""
    port: Annotated[int, Field(ge=1, le=65535)] = 25
    """SMTP port (465 for implicit TLS, 587 or 25 for STARTTLS)."""
    username: str | None = None
    """SMTP AUTH user; unset: no AUTH."""
    password: SecretSetting | None = None
    """SMTP AUTH password; inline, {env = "NAME"} or {file = "/path"}."""
    tls: Literal["auto", "starttls", "implicit", "none"] = "auto"
    """auto: STARTTLS required unless the host is loopback."""
    from_address: str = "reporthubd@localhost"
    """The From: address of report emails."""
    reply_to: str | None = None
    """An optional Reply-To: address."""
    timeout_seconds: Annotated[float, Field(gt=0)] = 60.0
    """Connect and command timeout for the SMTP conversation."""


class Settings(_Section):
    store: StoreSettings = Field(default_factory=StoreSettings)
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    execution: ExecutionSettings = Field(default_factory=ExecutionSettings)
    control: ControlSettings = Field(default_factory=ControlSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    notifications: NotificationSettings = Field(default_factory=NotificationSettings)


SECTIONS: dict[str, type[_Section]] = {
    name: field.annotation  # type: ignore[misc]
    for name, field in Settings.model_fields.items()
}


def parse_listen(value: str) -> tuple[str, int]:
    """Split `host:port` (or `[v6]:port`), raising ValueError with a readable reason."""
    match = re.fullmatch(
        r"\[(?P<v6>[^\]]+)\]:(?P<port>\d+)|(?P<host>[^:\[\]]+):(?P<port2>\d+)", value
    )
    if not match:
        raise ValueError(f"must be host:port, e.g. 127.0.0.1:8000 (got {value!r})")
    host = match.group("v6") or match.group("host")
    port = int(match.group("port") or match.group("port2"))
    if not 1 <= port <= 65535:
        raise ValueError(f"port must be 1-65535 (got {port})")
    if match.group("v6"):
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv6 address") from None
    elif not re.fullmatch(r"[A-Za-z0-9.-]+", host):
        raise ValueError(f"{host!r} is not a host name or address")
    return host, port


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, kw_only=True)
class Problem:
    where: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        place = f"{self.where} (line {self.line})" if self.line else self.where
        return f"{place}: {self.message}"


class ConfigError(Exception):
    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = problems
        count = len(problems)
        lines = [f"{source}: {count} problem{'s' if count != 1 else ''}"]
        lines += [f"  - {problem}" for problem in problems]
        super().__init__("\n".join(lines))


def resolve_config_path(explicit: str | None) -> Path | None:
    """-c FILE, then $REPORTHUBD_CONFIG, then /etc/reporthubd/config.toml if it exists."""
    if explicit:
        return Path(explicit)
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    if DEFAULT_CONFIG_PATH.exists():
        return DEFAULT_CONFIG_PATH
    return None


def load_settings(
    path: Path | None,
    environ: Mapping[str, str] | None = None,
    *,
    env_file: Path | Literal["auto"] | None = "auto",
) -> Settings:
    """Read, merge and validate; raise ConfigError listing every problem found."""
    return load(path, environ, env_file=env_file).settings


@dataclass(frozen=True, kw_only=True)
class LoadedSettings:
    settings: Settings
    sources: Mapping[str, str]
    """Where each setting's effective value came from, by `section.key`: `default`, the TOML
    file and line, or the variables (and their `.env` file)."""
    notices: tuple[str, ...]
    """What deserves a word but stops nothing: an unknown DB_* variable, a seed value that an
    explicit setting overrides."""


def load(
    path: Path | None,
    environ: Mapping[str, str] | None = None,
    *,
    env_file: Path | Literal["auto"] | None = "auto",
) -> LoadedSettings:
    """Read every layer, merge and validate; raise ConfigError listing every problem found.
    `env_file` "auto": the one `seed_env.env_file` finds; None: no `.env` file."""
    environ = os.environ if environ is None else environ
    problems: list[Problem] = []
    text = ""
    source = str(path) if path else "(built-in defaults)"
    data: dict[str, Any] = {}
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                source, [Problem(where="file", message=exc.strerror or str(exc))]
            ) from None
        data, syntax_problems = _parse_tolerantly(text)
        problems += syntax_problems
    from_file = {
        (section, key)
        for section, values in data.items()
        if isinstance(values, dict)
        for key in values
    }
    dotenv = seed_env.env_file(environ) if env_file == "auto" else env_file
    variables, findings = seed_env.gather(environ, dotenv)
    origins: dict[tuple[str, str], str] = {}
    problems += _apply_environment(data, variables, origins)
    explicit = {
        f"{section}.{key}": seed_env.Explicit(
            value=data[section][key],
            source=origins.get((section, key)) or _file_place(source, text, section, key),
        )
        for section, key in from_file | set(origins)
    }
    seed = seed_env.layer(variables)
    outcome = seed_env.reconcile(seed, explicit)
    findings += seed.problems + outcome.problems
    problems += [Problem(where=f.where, message=f.message, line=f.line) for f in findings]
    for value in outcome.fills:
        section, key = value.section_key
        target = data.setdefault(section, {})
        if isinstance(target, dict):
            target[key] = value.value
            origins[(section, key)] = value.label
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        problems += _describe(exc, text, origins)
        settings = None
    if problems or settings is None:
        problems.sort(key=lambda p: (p.line is None, p.line or 0))
        raise ConfigError(source, problems)
    sources = {
        f"{section}.{key}": origins.get((section, key))
        or (_file_place(source, text, section, key) if (section, key) in from_file else "default")
        for section, model in SECTIONS.items()
        for key in model.model_fields
    }
    return LoadedSettings(
        settings=settings, sources=sources, notices=tuple(seed.notices + outcome.notices)
    )


def _file_place(source: str, text: str, section: str, key: str) -> str:
    line = _locate(text, [section, key])
    return f"{source} line {line}" if line else source


_LINE_RE = re.compile(r"\(at line (\d+), column \d+\)")


def _parse_tolerantly(text: str) -> tuple[dict[str, Any], list[Problem]]:
    """Parse TOML; on a syntax error blank the offending line and go on, so later problems
    are still found. Each blanked line is reported as a syntax error."""
    problems: list[Problem] = []
    lines = text.splitlines()
    for _ in range(50):
        try:
            return tomllib.loads("\n".join(lines)), problems
        except tomllib.TOMLDecodeError as exc:
            match = _LINE_RE.search(str(exc))
            reason = _LINE_RE.sub("", str(exc)).strip()
            if not match:
                problems.append(Problem(where="file", message=f"syntax error: {reason}"))
                return {}, problems
            lineno = int(match.group(1))
            problems.append(
                Problem(where="file", line=lineno, message=f"syntax error: {reason} (line ignored)")
            )
            if lineno > len(lines) or not lines[lineno - 1].strip():
                return {}, problems
            lines[lineno - 1] = ""
    return {}, problems


def _apply_environment(
    data: dict[str, Any],
    variables: Mapping[str, seed_env.Variable],
    env_keys: dict[tuple[str, str], str],
) -> list[Problem]:
    problems: list[Problem] = []
    for name, variable in sorted(variables.items()):
        if not name.startswith(ENV_PREFIX) or name == CONFIG_ENV:
            continue
        raw = variable.value
        label = seed_env.describe([variable])
        rest = name[len(ENV_PREFIX) :].lower()
        section, _, key = rest.partition("_")
        if section not in SECTIONS:
            continue
        if key not in SECTIONS[section].model_fields:
            problems.append(
                Problem(where=f"environment {label}", message=f"unknown key {section}.{key}")
            )
            continue
        try:
            value: Any = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        target = data.setdefault(section, {})
        if isinstance(target, dict):
            target[key] = value
            env_keys[(section, key)] = label
    return problems


def _describe(
    exc: ValidationError, text: str, env_keys: dict[tuple[str, str], str]
) -> list[Problem]:
    problems = []
    for error in exc.errors():
        raw_loc = error["loc"]
        union_at = next((i for i, part in enumerate(raw_loc) if _is_union_tag(part)), None)
        loc = [str(part) for part in raw_loc[:union_at]]
        where = ".".join(loc) or "file"
        if union_at is not None:
            message = 'must be a string, {env = "NAME"} or {file = "/path"}'
        elif error["type"] == "extra_forbidden":
            message = "unknown key"
        elif error["type"] in {"value_error", "assertion_error"}:
            message = (
                str(error["ctx"].get("error", error["msg"])) if "ctx" in error else error["msg"]
            )
        else:
            got = error.get("input")
            message = f"{error['msg'].lower()} (got {got!r})" if got is not None else error["msg"]
        env_name = env_keys.get((loc[0], loc[1])) if len(loc) >= 2 else None
        if env_name:
            problems.append(Problem(where=f"{where} (from {env_name})", message=message))
        else:
            problems.append(Problem(where=where, message=message, line=_locate(text, loc)))
    # One bad value of a union (e.g. a secret setting) yields one error per member; keep one.
    unique: dict[str, Problem] = {}
    for problem in problems:
        unique.setdefault(problem.where, problem)
    return list(unique.values())


def _is_union_tag(part: Any) -> bool:
    return isinstance(part, str) and part in {"str", "EnvRef", "FileRef", "int", "float", "bool"}


def _locate(text: str, loc: list[str]) -> int | None:
    """Best-effort line of `[section]` / `key =` in the file, for error messages."""
    if not text or not loc:
        return None
    section = None
    section_line = None
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        header = re.fullmatch(r"\[\s*([A-Za-z0-9_.-]+)\s*\]\s*(#.*)?", stripped)
        if header:
            section = header.group(1)
            if section == loc[0]:
                section_line = number
            continue
        if len(loc) >= 2 and section == loc[0] and re.match(rf"{re.escape(loc[1])}\s*=", stripped):
            return number
    return section_line
