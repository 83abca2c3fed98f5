"""The two-service design's deployment variables, read as reporthubd settings.

Teams that run the seed's design (an execution API and a scheduler API beside the Go
configuration API) share one `.env` file holding `DB_*`, `EXECUTION_API_PORT`,
`SCHEDULER_API_PORT` and a few tuning names. This module maps each of those names onto one
reporthubd setting (`MAPPING`, rendered into docs/configuration.md), so that file works as is.

Contract, in the order the loader (`config.load`) drives it:

1. `env_file(environ)`: the `.env` file to read: `$REPORTHUBD_ENV_FILE` when it is set (empty:
   none), else `.env` in the working directory when there is one.
2. `gather(environ, path)`: every variable the loader may read: the process environment over the
   file's lines (an exported variable wins, as with `docker run --env-file` and python-dotenv's
   `load_dotenv`). The file is parsed by python-dotenv, literally (no `${VAR}` expansion, as
   systemd's `EnvironmentFile=` reads it), and is never exported into the process environment.
   A line that does not parse is a problem (its line number only: a line may hold a password).
3. `layer(variables)`: the seed's values, converted, each with the variables it came from; a
   `DB_*` name reporthubd does not know (a misspelling such as `DB_PASWORD`) is a notice.
4. `reconcile(layer, explicit)`: the seed's names are the lowest layer above the defaults, under
   the TOML file and `REPORTHUBD_*` variables (`explicit`). A setting given by both with equal
   values agrees. For the store a difference is a conflict, reported as a problem naming both
   sources: which database holds the schedules and receives the executions is never guessed.
   For every other setting the explicit value wins, and the difference is a notice.

No message here holds a password: `DB_PASSWORD` is compared, never shown, and store URLs are
shown without theirs.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from dotenv.parser import parse_stream

ENV_FILE_VARIABLE = "REPORTHUBD_ENV_FILE"
DEFAULT_ENV_FILE = ".env"
ENVIRONMENT = "environment"
"""The origin of a variable exported to the process (the others name their `.env` file)."""
SEED_LOOPBACK = "127.0.0.1"
"""The host the seed's two ports are served on: loopback, where reporthubd needs no token."""
MYSQL_DEFAULT_PORT = 3306

DB_PARTS = ("DB_HOST", "DB_PORT", "DB_USER", "DB_NAME")
"""The variables naming the shared database (DB_PASSWORD is its secret, kept apart)."""
DB_REQUIRED = ("DB_HOST", "DB_USER", "DB_NAME")
DB_NAMES = (*DB_PARTS, "DB_PASSWORD")


@dataclass(frozen=True, kw_only=True)
class Mapped:
    """One row of the compatibility mapping."""

    names: tuple[str, ...]
    setting: str
    """`section.key` of the reporthubd setting."""
    rule: str
    """How the value is derived, for the documentation."""


MAPPING: tuple[Mapped, ...] = (
    Mapped(
        names=DB_PARTS,
        setting="store.url",
        rule="`mysql://DB_USER@DB_HOST:DB_PORT/DB_NAME` (DB_PORT defaults to 3306)",
    ),
    Mapped(
        names=("DB_PASSWORD",),
        setting="store.password",
        rule="the store's password; never logged or answered",
    ),
    Mapped(
        names=("EXECUTION_API_PORT",),
        setting="control.listen",
        rule=f"`{SEED_LOOPBACK}:EXECUTION_API_PORT`",
    ),
    Mapped(
        names=("SCHEDULER_API_PORT",),
        setting="control.extra_listen",
        rule=f'`["{SEED_LOOPBACK}:SCHEDULER_API_PORT"]` (the whole API, as on the other port)',
    ),
    Mapped(
        names=("MAX_CONCURRENT_EXECUTIONS",),
        setting="execution.max_concurrent_executions",
        rule="as is (the size of the execution pool)",
    ),
    Mapped(
        names=("QUERY_TIMEOUT_SECONDS",),
        setting="execution.query_timeout_seconds",
        rule="as is (the default for report configs without timeout_seconds)",
    ),
    Mapped(
        names=("SCHEDULER_TIMEZONE",),
        setting="scheduler.timezone",
        rule="as is (the zone of schedules whose own timezone is NULL)",
    ),
    Mapped(
        names=("SCHEDULER_CHECK_INTERVAL_SECONDS",),
        setting="scheduler.reload_interval_seconds",
        rule="as is (how often the store is checked for changed definitions)",
    ),
)

_PORTS = ("DB_PORT", "EXECUTION_API_PORT", "SCHEDULER_API_PORT")


@dataclass(frozen=True, kw_only=True)
class Variable:
    name: str
    value: str
    origin: str
    """ENVIRONMENT, or the path of the `.env` file the line is in."""


@dataclass(frozen=True, kw_only=True)
class Finding:
    """A problem, in the loader's terms (it becomes a `config.Problem`)."""

    where: str
    message: str
    line: int | None = None


@dataclass(frozen=True, kw_only=True)
class SeedValue:
    """A setting's value derived from the seed's variables."""

    setting: str
    value: Any
    sources: tuple[Variable, ...]

    @property
    def label(self) -> str:
        return describe(self.sources)

    @property
    def section_key(self) -> tuple[str, str]:
        section, _, key = self.setting.partition(".")
        return section, key


@dataclass(kw_only=True)
class Layer:
    values: dict[str, SeedValue] = field(default_factory=dict)
    """Every setting but the store's, by `section.key`."""
    store: dict[str, Variable] = field(default_factory=dict)
    """The DB_* variables that are set, by name."""
    problems: list[Finding] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class Explicit:
    """A setting given by the TOML file or a REPORTHUBD_* variable."""

    value: Any
    source: str


@dataclass(kw_only=True)
class Outcome:
    fills: list[SeedValue] = field(default_factory=list)
    """Seed values for settings no explicit layer gives: the loader sets them."""
    problems: list[Finding] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)


def seed_names(environ: Mapping[str, str]) -> list[str]:
    """The seed's variables present in `environ`: the mapped names and every `DB_*`."""
    mapped = {name for row in MAPPING for name in row.names}
    return sorted(name for name in environ if name in mapped or name.startswith("DB_"))


def describe(variables: Iterable[Variable]) -> str:
    """`DB_HOST, DB_USER in /srv/app/.env`; exported variables by their name alone."""
    groups: dict[str, list[str]] = {}
    for variable in variables:
        groups.setdefault(variable.origin, []).append(variable.name)
    return "; ".join(
        ", ".join(names) if origin == ENVIRONMENT else f"{', '.join(names)} in {origin}"
        for origin, names in groups.items()
    )


def env_file(environ: Mapping[str, str]) -> Path | None:
    if ENV_FILE_VARIABLE in environ:
        named = environ[ENV_FILE_VARIABLE]
        return Path(named) if named else None
    default = Path(DEFAULT_ENV_FILE)
    return default.absolute() if default.is_file() else None


def gather(
    environ: Mapping[str, str], path: Path | None
) -> tuple[dict[str, Variable], list[Finding]]:
    """The process environment over the lines of the `.env` file at `path` (if any)."""
    found: dict[str, Variable] = {}
    problems: list[Finding] = []
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            problems.append(Finding(where=f"env file {path}", message=exc.strerror or str(exc)))
            text = ""
        for binding in parse_stream(io.StringIO(text)):
            if binding.error:
                problems.append(
                    Finding(
                        where=f"env file {path}",
                        line=binding.original.line,
                        message="not NAME=value (line ignored)",
                    )
                )
            elif binding.key is not None and binding.value is not None:
                found[binding.key] = Variable(
                    name=binding.key, value=binding.value, origin=str(path)
                )
    for name, value in environ.items():
        found[name] = Variable(name=name, value=value, origin=ENVIRONMENT)
    return found, problems


def _number(text: str) -> int | float | str:
    """An integer or a decimal number; anything else is left for the settings model to
    refuse, with the variable's name in the message."""
    for convert in (int, float):
        try:
            return convert(text.strip())
        except ValueError:
            continue
    return text


def _port(variable: Variable, problems: list[Finding]) -> int | None:
    try:
        port = int(variable.value.strip())
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        problems.append(
            Finding(
                where=describe([variable]),
                message=f"must be a port number 1-65535 (got {variable.value!r})",
            )
        )
        return None
    return port


def layer(variables: Mapping[str, Variable]) -> Layer:
    result = Layer()
    for name in sorted(variables):
        if name.startswith("DB_") and name not in DB_NAMES:
            result.notices.append(
                f"{describe([variables[name]])}: not a variable reporthubd reads (the store "
                f"comes from {', '.join(DB_NAMES)}); misspelt?"
            )
    result.store = {name: variables[name] for name in DB_NAMES if name in variables}
    if "DB_PORT" in result.store:
        _port(result.store["DB_PORT"], result.problems)
    for mapped in MAPPING:
        if mapped.setting.startswith("store."):
            continue
        (name,) = mapped.names
        if name not in variables:
            continue
        variable = variables[name]
        value: Any
        if name in _PORTS:
            port = _port(variable, result.problems)
            if port is None:
                continue
            address = f"{SEED_LOOPBACK}:{port}"
            value = [address] if mapped.setting == "control.extra_listen" else address
        elif name == "SCHEDULER_TIMEZONE":
            value = variable.value.strip()
        else:
            value = _number(variable.value)
        result.values[mapped.setting] = SeedValue(
            setting=mapped.setting, value=value, sources=(variable,)
        )
    return result


@dataclass(frozen=True, kw_only=True)
class _Store:
    """What a store URL names, compared part by part with the seed's DB_* variables."""

    mysql: bool
    host: str | None
    port: int | None
    user: str | None
    database: str | None
    password: str | None

    @classmethod
    def of(cls, url: str) -> _Store:
        parts = urlsplit(url)
        scheme = parts.scheme.split("+", 1)[0].lower()
        mysql = scheme in {"mysql", "mariadb"}
        try:
            port = parts.port
        except ValueError:
            port = None
        return cls(
            mysql=mysql,
            host=(parts.hostname or "").lower() or None,
            port=port or (MYSQL_DEFAULT_PORT if mysql else None),
            user=unquote(parts.username) if parts.username is not None else None,
            database=unquote(parts.path.lstrip("/")) or None,
            password=unquote(parts.password) if parts.password is not None else None,
        )

    def disagrees_with(self, seed: Mapping[str, Variable]) -> list[str]:
        """The DB_* names whose value differs from this store's part (all, if not MySQL)."""
        if not self.mysql:
            return [name for name in DB_PARTS if name in seed]
        wanted: dict[str, object] = {
            "DB_HOST": self.host,
            "DB_PORT": self.port,
            "DB_USER": self.user,
            "DB_NAME": self.database,
        }
        given: dict[str, object] = {
            name: (
                _number(seed[name].value)
                if name == "DB_PORT"
                else seed[name].value.strip().lower()
                if name == "DB_HOST"
                else seed[name].value
            )
            for name in DB_PARTS
            if name in seed
        }
        return [name for name, value in given.items() if wanted[name] != value]


def shown(url: str) -> str:
    """A store URL for a message: its password left out."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.netloc.rsplit("@", 1)[0].split(":", 1)[0]
    return parts._replace(netloc=f"{user}@{netloc}").geturl()


def seed_store_url(store: Mapping[str, Variable]) -> str:
    host = store["DB_HOST"].value.strip()
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    port = _number(store["DB_PORT"].value) if "DB_PORT" in store else MYSQL_DEFAULT_PORT
    user = quote(store["DB_USER"].value, safe="")
    database = quote(store["DB_NAME"].value, safe="")
    return f"mysql://{user}@{host}:{port}/{database}"


def reconcile(seed: Layer, explicit: Mapping[str, Explicit]) -> Outcome:
    outcome = Outcome()
    _reconcile_store(seed, explicit, outcome)
    for setting, value in seed.values.items():
        given = explicit.get(setting)
        if given is None:
            outcome.fills.append(value)
        elif given.value != value.value:
            outcome.notices.append(
                f"{setting}: {given.value!r} from {given.source} wins over {value.label} "
                f"({value.value!r})"
            )
    return outcome


def _reconcile_store(seed: Layer, explicit: Mapping[str, Explicit], outcome: Outcome) -> None:
    parts = {name: seed.store[name] for name in DB_PARTS if name in seed.store}
    password = seed.store.get("DB_PASSWORD")
    given_url = explicit.get("store.url")
    given_store = _Store.of(str(given_url.value)) if given_url is not None else None
    if given_url is not None and given_store is not None:
        differing = given_store.disagrees_with(parts)
        if differing:
            theirs = (
                f" {seed_store_url(parts)}"
                if all(name in parts for name in DB_REQUIRED)
                else " another"
            )
            outcome.problems.append(
                Finding(
                    where="store.url",
                    message=(
                        f"{given_url.source} names {shown(str(given_url.value))}, while "
                        f"{describe(parts.values())} name{theirs} "
                        f"({', '.join(differing)} differ{'s' if len(differing) == 1 else ''}): "
                        "keep one of the two"
                    ),
                )
            )
    elif seed.store:
        missing = [name for name in DB_REQUIRED if name not in parts]
        if missing:
            outcome.problems.append(
                Finding(
                    where=describe(seed.store.values()),
                    message=(
                        f"set, but not {', '.join(missing)}: the seed's store needs DB_HOST, "
                        f"DB_USER and DB_NAME (DB_PORT defaults to {MYSQL_DEFAULT_PORT})"
                    ),
                )
            )
        elif "DB_PORT" not in parts or isinstance(_number(parts["DB_PORT"].value), int):
            outcome.fills.append(
                SeedValue(
                    setting="store.url",
                    value=seed_store_url(parts),
                    sources=tuple(parts.values()),
                )
            )
    if password is not None:
        _reconcile_password(password, explicit, given_store, outcome)


def _reconcile_password(
    password: Variable,
    explicit: Mapping[str, Explicit],
    given_store: _Store | None,
    outcome: Outcome,
) -> None:
    given = explicit.get("store.password")
    conflict: str | None = None
    if given is not None:
        # {env = "DB_PASSWORD"} reads the process environment, not the .env file.
        same = given.value == password.value or (
            given.value == {"env": "DB_PASSWORD"} and password.origin == ENVIRONMENT
        )
        if not same:
            conflict = f"store.password is set by {given.source}"
    elif given_store is not None and given_store.password is not None:
        if given_store.password != password.value:
            conflict = f"store.url ({explicit['store.url'].source}) holds a password"
    elif given_store is not None and not given_store.mysql:
        conflict = f"store.url ({explicit['store.url'].source}) names a store without one"
    else:
        outcome.fills.append(
            SeedValue(setting="store.password", value=password.value, sources=(password,))
        )
    if conflict is not None:
        outcome.problems.append(
            Finding(
                where="store.password",
                message=f"{conflict}, and {describe([password])} gives another: keep one",
            )
        )
