"""Turning store rows into domain records: every check in one place, each failure a RowError.

A row written by another service may be malformed (bad JSON, unknown strings, impossible values);
conversion collects every problem of the row and reports it, it never raises.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from reporthubd import calendars, domain, secrets, waits
from reporthubd.cron import CronError, parse_cron
from reporthubd.store.types import MalformedJSON

E = TypeVar("E", bound=enum.StrEnum)


class _Problems:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, message: str) -> None:
        self.items.append(message)

    def json_object(self, row: Mapping[str, Any], column: str, *, required: bool) -> dict[str, Any]:
        value = row.get(column)
        if value is None:
            if required:
                self.add(f"{column}: missing (must be a JSON object)")
            return {}
        if isinstance(value, MalformedJSON):
            self.add(f"{column}: malformed JSON ({value.error})")
            return {}
        if isinstance(value, str):  # JSON that decodes to a string: often double-encoded
            self.add(f"{column}: must be a JSON object, got a JSON string")
            return {}
        if not isinstance(value, dict):
            self.add(f"{column}: must be a JSON object, got {type(value).__name__}")
            return {}
        return value

    def choice(self, enum_type: type[E], row: Mapping[str, Any], column: str) -> E | None:
        raw = row.get(column)
        try:
            return enum_type(str(raw).strip().lower())
        except ValueError:
            known = ", ".join(member.value for member in enum_type)
            self.add(f"{column}: unknown value {raw!r} (known: {known})")
            return None

    def positive(self, row: Mapping[str, Any], column: str) -> Any:
        value = row.get(column)
        if value is not None and value <= 0:
            self.add(f"{column}: must be positive, got {value}")
            return None
        return value


def _error(table: str, row: Mapping[str, Any], problems: _Problems) -> domain.RowError:
    return domain.RowError(table=table, row_id=row.get("id"), problems=tuple(problems.items))


def _unknown_keys(document: Mapping[str, Any], known: frozenset[str]) -> list[str]:
    return sorted(str(key) for key in document if key not in known)


def datasource(row: Mapping[str, Any]) -> domain.Datasource | domain.RowError:
    p = _Problems()
    kind = p.choice(domain.DatasourceType, row, "type")
    config = p.json_object(row, "connection_config", required=True)
    max_queries = p.positive(row, "max_concurrent_queries")
    if p.items or kind is None:
        return _error("report_datasources", row, p)
    secrets.remember_inline(config)
    return domain.Datasource(
        id=row["id"],
        name=row["name"],
        type=kind,
        connection_config=config,
        max_concurrent_queries=max_queries,
        is_active=bool(row["is_active"]),
        updated_at=row.get("updated_at"),
    )


def report_config(row: Mapping[str, Any]) -> domain.ReportConfig | domain.RowError:
    p = _Problems()
    output = p.choice(domain.OutputFormat, row, "output_format")
    empty = p.choice(domain.EmptyResultPolicy, row, "empty_result_policy")
    parameters = p.json_object(row, "parameters", required=False)
    options = p.json_object(row, "format_options", required=False)
    if not str(row.get("query_text") or "").strip():
        p.add("query_text: empty")
    timeout = p.positive(row, "timeout_seconds")
    max_rows = p.positive(row, "max_rows")
    if row.get("alert") is not None and not isinstance(row.get("alert"), dict):
        p.add("alert: must be an object with condition, mode and check_query")
    if p.items or output is None or empty is None:
        return _error("report_configs", row, p)
    return domain.ReportConfig(
        id=row["id"],
        name=row["name"],
        description=row.get("description"),
        datasource_id=row["datasource_id"],
        query_text=row["query_text"],
        parameters=parameters,
        output_format=output,
        format_options=options,
        file_name_template=row.get("file_name_template"),
        timeout_seconds=float(timeout) if timeout is not None else None,
        max_rows=max_rows,
        empty_result_policy=empty,
        is_active=bool(row["is_active"]),
        updated_at=row.get("updated_at"),
        alert=row["alert"] if isinstance(row.get("alert"), dict) else None,
    )


def schedule(row: Mapping[str, Any], *, default_timezone: str) -> domain.Schedule | domain.RowError:
    p = _Problems()
    try:
        parse_cron(str(row.get("cron_expression") or ""))
    except CronError as exc:
        p.add(f"cron_expression: {exc}")
    zone_name = row.get("timezone") or None
    zone: ZoneInfo | None = None
    try:
        zone = ZoneInfo(zone_name or default_timezone)
    except (ZoneInfoNotFoundError, ValueError):
        p.add(f"timezone: unknown IANA time zone {zone_name!r}")
    policy = p.choice(domain.MisfirePolicy, row, "misfire_policy")
    parameters = p.json_object(row, "parameters", required=False)
    grace = row.get("misfire_grace_seconds")
    if grace is not None and grace < 0:
        p.add(f"misfire_grace_seconds: must not be negative, got {grace}")
    start_at: datetime | None = row.get("start_at")
    end_at: datetime | None = row.get("end_at")
    if start_at and end_at and end_at <= start_at:
        p.add("end_at: must be after start_at")
    calendar_name = row.get("calendar_name") or None
    calendar_policy = None
    if calendar_name is not None:
        # no policy with a calendar: a closed day moves the fire on (the common wish)
        raw_policy = row.get("calendar_policy") or calendars.CalendarPolicy.NEXT_BUSINESS_DAY
        calendar_policy = p.choice(
            calendars.CalendarPolicy, {"calendar_policy": raw_policy}, "calendar_policy"
        )
    elif row.get("calendar_policy"):
        p.add("calendar_policy: set without a calendar_name")
    wait_rule = None
    try:
        wait_rule = waits.parse(row)
    except ValueError as exc:
        p.add(str(exc))
    if p.items or zone is None or policy is None:
        return _error("report_schedules", row, p)
    return domain.Schedule(
        id=row["id"],
        config_id=row["config_id"],
        cron_expression=row["cron_expression"],
        timezone=zone,
        timezone_name=zone_name,
        parameters=parameters,
        misfire_policy=policy,
        misfire_grace_seconds=grace,
        start_at=start_at,
        end_at=end_at,
        is_active=bool(row["is_active"]),
        last_run_at=row.get("last_run_at"),
        next_run_at=row.get("next_run_at"),
        updated_at=row.get("updated_at"),
        calendar_name=calendar_name,
        calendar_policy=calendar_policy,
        paused_at=row.get("paused_at"),
        paused_by=row.get("paused_by"),
        paused_reason=row.get("paused_reason"),
        resumed_at=row.get("resumed_at"),
        resumed_by=row.get("resumed_by"),
        waits=wait_rule,
    )


def delivery(row: Mapping[str, Any]) -> domain.Delivery | domain.RowError:
    p = _Problems()
    method = p.choice(domain.DeliveryMethod, row, "method")
    config = p.json_object(row, "delivery_config", required=True)
    max_retry = row.get("max_retry")
    if max_retry is None or max_retry < 0:
        p.add(f"max_retry: must be 0 or more, got {max_retry!r}")
    interval = row.get("retry_interval_minutes")
    if interval is None or interval < 0:
        p.add(f"retry_interval_minutes: must be 0 or more, got {interval!r}")
    if p.items or method is None:
        return _error("report_deliveries", row, p)
    secrets.remember_inline(config)
    for key in domain.DELIVERY_SECRET_KEYS.get(method, ()):  # a chat webhook URL's token
        if isinstance(config.get(key), str):
            secrets.remember(config[key])
    return domain.Delivery(
        id=row["id"],
        config_id=row["config_id"],
        name=row.get("name"),
        method=method,
        delivery_config=config,
        max_retry=int(max_retry or 0),
        retry_interval_minutes=float(interval or 0),
        is_active=bool(row["is_active"]),
        updated_at=row.get("updated_at"),
    )


def recipient(row: Mapping[str, Any]) -> domain.Recipient | domain.RowError:
    p = _Problems()
    kind = p.choice(domain.RecipientType, row, "recipient_type")
    email = str(row.get("email") or "").strip()
    if "@" not in email or any(ch.isspace() for ch in email):
        p.add(f"email: not an address: {email!r}")
    if p.items or kind is None:
        return _error("report_delivery_recipients", row, p)
    return domain.Recipient(
        id=row["id"],
        delivery_id=row["delivery_id"],
        recipient_type=kind,
        email=email,
        name=row.get("name"),
    )


def unknown_key_warnings(
    record: domain.Datasource | domain.Delivery,
) -> list[str]:
    """Keys outside the contract's sets, for `reporthubd check` (warnings, not errors)."""
    if isinstance(record, domain.Datasource):
        keys = _unknown_keys(record.connection_config, domain.CONNECTION_KEYS[record.type])
        column = "connection_config"
    else:
        keys = _unknown_keys(record.delivery_config, domain.DELIVERY_KEYS[record.method])
        column = "delivery_config"
    return [f"{column}: unknown key {key!r}" for key in keys]


def calendar(row: Mapping[str, Any]) -> calendars.Calendar | domain.RowError:
    """A report_calendars row, validated by calendars.build (a RowError names the key)."""
    try:
        return calendars.build(
            name=str(row.get("name") or ""),
            country=row.get("country") or None,
            subdivision=row.get("subdivision") or None,
            added=calendars.parse_added(_plain(row.get("added_dates")), "added_dates"),
            removed=calendars.parse_removed(_plain(row.get("removed_dates")), "removed_dates"),
        )
    except calendars.CalendarError as exc:
        return domain.RowError(table="report_calendars", row_id=row.get("id"), problems=(str(exc),))


def _plain(value: object) -> object:
    if isinstance(value, MalformedJSON):
        raise calendars.CalendarError(f"malformed JSON ({value.error})")
    return value
