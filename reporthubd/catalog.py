"""Reports as code: a TOML file describing datasources, reports, schedules, deliveries and
recipients, applied to the store (`reporthubd apply`) and written back out (`reporthubd export`).

Matching: datasources and reports by `name`; deliveries by `name` within their report; recipients by
`email` within their delivery; schedules (which have no name) by `cron` and `timezone` within their
report. `apply` validates the whole file (and its references against the store) before writing
anything, then writes everything in one transaction. Without `--prune` rows the file does not name
are left alone; with it they are removed.

Inline secrets are exported as "***"; applying "***" for a secret key keeps the stored value, so an
exported file round-trips without ever holding a password.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from reporthubd import alert_rules, calendars, catalog_audiences, catalog_waits, domain, secrets
from reporthubd.catalog_audiences import AudienceSpec
from reporthubd.config import Problem
from reporthubd.cron import CronError, parse_cron
from reporthubd.deliverers import config_check
from reporthubd.notify import report_rules
from reporthubd.notify_rules import RuleError

MASK = secrets.MASK


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class DatasourceSpec(_Spec):
    name: str = Field(min_length=1, max_length=255)
    type: domain.DatasourceType
    connection_config: dict[str, Any]
    max_concurrent_queries: int | None = Field(default=None, ge=1)
    is_active: bool = True

    @field_validator("type", mode="before")
    @classmethod
    def _type(cls, value: Any) -> Any:
        return domain.DatasourceType(value) if isinstance(value, str) else value


class CalendarSpec(_Spec):
    """A business calendar (reporthubd/calendars.py): `added` closes days (date = name),
    `removed` opens them, over the country's and subdivision's public holidays."""

    name: str = Field(min_length=1, max_length=255)
    country: str | None = None
    subdivision: str | None = None
    added: dict[str, str] = Field(default_factory=dict)
    removed: list[str] = Field(default_factory=list)
    is_active: bool = True

    @model_validator(mode="after")
    def _valid(self) -> CalendarSpec:
        self.build()
        return self

    def build(self) -> calendars.Calendar:
        try:
            return calendars.build(
                name=self.name,
                country=self.country,
                subdivision=self.subdivision,
                added=calendars.parse_added(self.added),
                removed=calendars.parse_removed(self.removed),
            )
        except calendars.CalendarError as exc:
            raise ValueError(str(exc)) from None


class ScheduleSpec(_Spec):
    name: str | None = Field(default=None, min_length=1, max_length=255)
    """Stable within the report: with a name, an edited cron or zone updates this schedule
    instead of adding another beside it (`export` writes the names)."""
    cron: str
    timezone: str | None = None
    calendar: str | None = None
    """A calendar's name (in this file's `[[calendars]]` or already in the store)."""
    calendar_policy: calendars.CalendarPolicy | None = None
    """With `calendar`: skip, next_business_day (the default) or previous_business_day."""
    parameters: dict[str, Any] = Field(default_factory=dict)
    misfire_policy: domain.MisfirePolicy = domain.MisfirePolicy.RUN_ONCE
    misfire_grace_seconds: int | None = Field(default=None, ge=0)
    start_at: datetime | None = None
    end_at: datetime | None = None
    is_active: bool = True
    deadline: str | None = None
    """By when each fire's run must have COMPLETED: "07:30" (the schedule's zone, or
    "07:30 Europe/Berlin") or "+20m" after the fire; past it, a `late` notice (issue 17)."""
    # what its runs wait for (reporthubd/waits.py; checked by catalog_waits.py)
    depends_on: list[str] = Field(default_factory=list)
    readiness_query: str | None = None
    wait_deadline: str | None = None
    wait_policy: str | None = None

    @model_validator(mode="after")
    def _wait_rule(self) -> ScheduleSpec:
        catalog_waits.check_rule(self)
        return self

    @field_validator("deadline")
    @classmethod
    def _deadline(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                report_rules.parse_deadline(value, key="deadline")
            except RuleError as exc:
                raise ValueError(str(exc).removeprefix("deadline: ")) from None
        return value

    @field_validator("misfire_policy", mode="before")
    @classmethod
    def _policy(cls, value: Any) -> Any:
        return domain.MisfirePolicy(value) if isinstance(value, str) else value

    @field_validator("calendar_policy", mode="before")
    @classmethod
    def _calendar_policy(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return calendars.parse_policy(value)
            except calendars.CalendarError as exc:
                raise ValueError(str(exc)) from None
        return value

    @model_validator(mode="after")
    def _policy_needs_calendar(self) -> ScheduleSpec:
        if self.calendar_policy is not None and self.calendar is None:
            raise ValueError("calendar_policy: set without a calendar")
        return self

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        try:
            parse_cron(value)
        except CronError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown IANA time zone {value!r}") from None
        return value

    @field_validator("start_at", "end_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("must carry a UTC offset, e.g. 2026-01-01T00:00:00Z")
        return value


class RecipientSpec(_Spec):
    email: str
    type: domain.RecipientType = domain.RecipientType.TO
    name: str | None = None
    is_active: bool = True

    @field_validator("type", mode="before")
    @classmethod
    def _type(cls, value: Any) -> Any:
        return domain.RecipientType(value) if isinstance(value, str) else value

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        if not re.fullmatch(r"[^@\s]+@[^@\s]+", value):
            raise ValueError(f"not an email address: {value!r}")
        return value


class DeliverySpec(_Spec):
    name: str = Field(min_length=1, max_length=255)
    method: domain.DeliveryMethod
    config: dict[str, Any]
    max_retry: int = Field(default=3, ge=0)
    retry_interval_minutes: int = Field(default=5, ge=0)
    is_active: bool = True
    recipients: list[RecipientSpec] = Field(default_factory=list)

    @field_validator("method", mode="before")
    @classmethod
    def _method(cls, value: Any) -> Any:
        return domain.DeliveryMethod(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _unique_recipients(self) -> DeliverySpec:
        _no_duplicates([r.email.lower() for r in self.recipients], "recipient email")
        return self

    @model_validator(mode="after")
    def _method_settings(self) -> DeliverySpec:
        """Chat tokens and URLs, webhook bodies and signatures (deliverers/config_check.py)."""
        found = config_check.problems(self.method, self.config)
        if found:
            raise ValueError("; ".join(p.replace("delivery_config.", "config.", 1) for p in found))
        return self


class ReportSpec(_Spec):
    name: str = Field(min_length=1, max_length=255)
    datasource: str
    query: str = Field(min_length=1)
    output_format: domain.OutputFormat
    description: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    format_options: dict[str, Any] = Field(default_factory=dict)
    file_name_template: str | None = None
    timeout_seconds: int | None = Field(default=None, ge=1)
    max_rows: int | None = Field(default=None, ge=1)
    empty_result_policy: domain.EmptyResultPolicy = domain.EmptyResultPolicy.DELIVER
    is_active: bool = True
    schedules: list[ScheduleSpec] = Field(default_factory=list)
    deliveries: list[DeliverySpec] = Field(default_factory=list)
    notify: dict[str, Any] | None = None
    """Who is told about its runs (issue 17): {owners = [...], rules = [{events, notify,
    remind_every_minutes, suspend_after}]}; without rules, the configured default rule."""
    audiences: AudienceSpec | None = None
    """A driver query: one run per row, each sent to its audience (catalog_audiences.py)."""
    alert: dict[str, Any] | None = None
    """A conditional alert (issue 17, item 2): {condition = {...}, mode = "when_true",
    check_query = "..."} (alert_rules.py); None: every run delivered."""

    @field_validator("alert")
    @classmethod
    def _alert(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            try:
                alert_rules.parse_alert(value, key="alert")
            except alert_rules.AlertError as exc:
                raise ValueError(str(exc).removeprefix("alert.")) from None
        return value

    @field_validator("notify")
    @classmethod
    def _notify(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            try:
                report_rules.parse_notify(value, key="notify")
            except RuleError as exc:
                raise ValueError(str(exc).removeprefix("notify.")) from None
        return value

    @field_validator("output_format", mode="before")
    @classmethod
    def _format(cls, value: Any) -> Any:
        return domain.OutputFormat(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _format_options(self) -> ReportSpec:
        """The format options as a run reads them: column formats, chart, locale (issue 19)."""
        from reporthubd.formats import base as formats
        from reporthubd.formats import capture

        try:
            capture.check_options(self.output_format.value, self.format_options)
        except formats.FormatError as exc:
            raise ValueError(f"format_options: {exc}") from None
        return self

    @field_validator("empty_result_policy", mode="before")
    @classmethod
    def _empty(cls, value: Any) -> Any:
        return domain.EmptyResultPolicy(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _unique_children(self) -> ReportSpec:
        _no_duplicates([d.name for d in self.deliveries], "delivery name")
        _no_duplicates([(s.cron, s.timezone) for s in self.schedules], "schedule (cron, timezone)")
        _no_duplicates([s.name for s in self.schedules if s.name is not None], "schedule name")
        return self


class Catalog(_Spec):
    calendars: list[CalendarSpec] = Field(default_factory=list)
    datasources: list[DatasourceSpec] = Field(default_factory=list)
    reports: list[ReportSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> Catalog:
        _no_duplicates([c.name for c in self.calendars], "calendar name")
        _no_duplicates([d.name for d in self.datasources], "datasource name")
        _no_duplicates([r.name for r in self.reports], "report name")
        return self

    @model_validator(mode="after")
    def _no_dependency_cycle(self) -> Catalog:
        catalog_waits.check_cycles(self.reports)
        return self


def _no_duplicates(values: list[Any], what: str) -> None:
    seen: set[Any] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"duplicate {what} {value!r}")
        seen.add(value)


class CatalogError(Exception):
    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.problems = problems
        lines = [f"{source}: {len(problems)} problem{'s' if len(problems) != 1 else ''}"]
        lines += [f"  - {p}" for p in problems]
        super().__init__("\n".join(lines))


# -- parsing ------------------------------------------------------------------------------------


def parse(text: str, *, source: str = "catalog") -> Catalog:
    """Parse and validate a catalog file; raise CatalogError naming each problem's place."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(
            source, [Problem(where="file", message=f"syntax error: {exc}")]
        ) from None
    try:
        return Catalog.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = tuple(error["loc"])
            message = error["msg"]
            if error["type"] == "extra_forbidden":
                message = "unknown key"
            elif "ctx" in error and "error" in error["ctx"]:
                message = str(error["ctx"]["error"])
            problems.append(Problem(where=_dotted(loc), message=message, line=locate(text, loc)))
        raise CatalogError(source, problems) from None


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "file"


def locate(text: str, loc: tuple[Any, ...]) -> int | None:
    """Best-effort line of a validation error: walks `[[a]]` / `[[a.b]]` headers by index, then
    finds `key =` inside the table reached."""
    lines = text.splitlines()
    path: list[str] = []
    start, end = 0, len(lines)
    parts = list(loc)
    found: int | None = None
    while parts:
        part = parts.pop(0)
        if isinstance(part, int):
            continue
        if parts and isinstance(parts[0], int):
            index = parts.pop(0)
            header = "[[" + ".".join([*path, str(part)]) + "]]"
            hits = [n for n in range(start, end) if lines[n].strip().startswith(header)]
            if index >= len(hits):
                return found
            start = hits[index]
            found = start + 1
            nxt = [n for n in range(start + 1, end) if re.match(r"\s*\[\[?([^\]]+)", lines[n])]
            stop = end
            for n in nxt:
                name = re.match(r"\s*\[\[?([^\]]+)", lines[n]).group(1)  # type: ignore[union-attr]
                if not name.startswith(".".join([*path, str(part)]) + "."):
                    stop = n
                    break
            end = stop
            path.append(str(part))
            continue
        for n in range(start, end):
            if re.match(rf"\s*{re.escape(str(part))}\s*=", lines[n]):
                return n + 1
        return found
    return found


# -- plans --------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Change:
    action: Literal["create", "update", "delete"]
    kind: str
    label: str
    fields: tuple[str, ...] = ()

    def __str__(self) -> str:
        sign = {"create": "+", "update": "~", "delete": "-"}[self.action]
        detail = f" ({', '.join(self.fields)})" if self.fields else ""
        return f"{sign} {self.kind} {self.label}{detail}"


@dataclass(frozen=True, kw_only=True)
class Plan:
    changes: tuple[Change, ...] = field(default_factory=tuple)
    notes: tuple[str, ...] = ()
    """What the plan does not change but must say: stored schedules the file no longer names
    that stay active (without --prune), a report left with more active schedules than named."""

    @property
    def empty(self) -> bool:
        return not self.changes

    def summary(self) -> str:
        actions = [c.action for c in self.changes]
        return ", ".join(f"{actions.count(a)} to {a}" for a in ("create", "update", "delete"))


def _masked_delivery(method: domain.DeliveryMethod, config: Mapping[str, Any]) -> Any:
    masked = secrets.mask_document(config)
    for key in domain.DELIVERY_SECRET_KEYS.get(method, ()):
        if config.get(key) not in (None, "") and not secrets.is_reference(config[key]):
            masked[key] = MASK
    return masked


def keep_stored_secrets(
    new: Mapping[str, Any],
    stored: Mapping[str, Any] | None,
    also: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """Replace "***" under secret keys (and the top-level keys `also` names: a chat webhook's
    `url`) with the stored value (an exported file round-trips)."""
    stored = stored or {}
    out: dict[str, Any] = {}
    for key, value in new.items():
        secret = secrets.is_secret_key(str(key)) or key in also
        if value == MASK and secret and key in stored:
            out[key] = stored[key]
        elif isinstance(value, Mapping):
            inner = stored.get(key)
            out[key] = keep_stored_secrets(value, inner if isinstance(inner, Mapping) else None)
        else:
            out[key] = value
    return out


# -- rendering ----------------------------------------------------------------------------------

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str):
        if "\n" in value and "'''" not in value and not value.endswith("'"):
            return "'''\n" + value + "'''"
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        items = [f"{_key(str(k))} = {_value(v)}" for k, v in value.items() if v is not None]
        return "{ " + ", ".join(items) + " }" if items else "{}"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def _table(header: str, values: Mapping[str, Any]) -> list[str]:
    lines = [header]
    for key, value in values.items():
        if value is None or value == {} or value == []:
            continue
        lines.append(f"{_key(key)} = {_value(value)}")
    return [*lines, ""]


def render(catalog: Catalog) -> str:
    """The catalog as TOML, in the same format `parse` reads."""
    out = ["# reporthubd catalog: datasources, reports, schedules, deliveries, recipients.", ""]
    for cal in catalog.calendars:
        out += _table(
            "[[calendars]]",
            {
                "name": cal.name,
                "country": cal.country,
                "subdivision": cal.subdivision,
                "added": cal.added,
                "removed": cal.removed,
                "is_active": None if cal.is_active else False,
            },
        )
    for ds in catalog.datasources:
        out += _table(
            "[[datasources]]",
            {
                "name": ds.name,
                "type": ds.type.value,
                "connection_config": secrets.mask_document(ds.connection_config),
                "max_concurrent_queries": ds.max_concurrent_queries,
                "is_active": None if ds.is_active else False,
            },
        )
    for report in catalog.reports:
        out += _table(
            "[[reports]]",
            {
                "name": report.name,
                "datasource": report.datasource,
                "description": report.description,
                "output_format": report.output_format.value,
                "query": report.query,
                "parameters": report.parameters,
                "format_options": report.format_options,
                "file_name_template": report.file_name_template,
                "timeout_seconds": report.timeout_seconds,
                "max_rows": report.max_rows,
                "empty_result_policy": None
                if report.empty_result_policy is domain.EmptyResultPolicy.DELIVER
                else report.empty_result_policy.value,
                "is_active": None if report.is_active else False,
                "notify": report.notify,
                "alert": report.alert,
            },
        )
        driver = catalog_audiences.render(report.audiences)
        if driver is not None:
            out += _table(*driver)
        for sched in report.schedules:
            out += _table(
                "[[reports.schedules]]",
                {
                    "name": sched.name,
                    "cron": sched.cron,
                    "timezone": sched.timezone,
                    "calendar": sched.calendar,
                    "calendar_policy": sched.calendar_policy.value
                    if sched.calendar_policy is not None
                    else None,
                    "parameters": sched.parameters,
                    "misfire_policy": None
                    if sched.misfire_policy is domain.MisfirePolicy.RUN_ONCE
                    else sched.misfire_policy.value,
                    "misfire_grace_seconds": sched.misfire_grace_seconds,
                    "start_at": sched.start_at,
                    "end_at": sched.end_at,
                    "is_active": None if sched.is_active else False,
                    "deadline": sched.deadline,
                    **catalog_waits.exported(sched),
                },
            )
        for delivery in report.deliveries:
            out += _table(
                "[[reports.deliveries]]",
                {
                    "name": delivery.name,
                    "method": delivery.method.value,
                    "config": _masked_delivery(delivery.method, delivery.config),
                    "max_retry": delivery.max_retry,
                    "retry_interval_minutes": delivery.retry_interval_minutes,
                    "is_active": None if delivery.is_active else False,
                },
            )
            for person in delivery.recipients:
                out += _table(
                    "[[reports.deliveries.recipients]]",
                    {
                        "email": person.email,
                        "type": person.type.value,
                        "name": person.name,
                        "is_active": None if person.is_active else False,
                    },
                )
    return "\n".join(out).rstrip() + "\n"
