"""Audiences of a data-driven run: what a driver row means, read and checked while it streams.

A report with a driver (`report_audience_drivers`) is sent to each row of the driver's query,
one child run per row. The driver's columns:

- `recipients` (or the driver's `recipients_column`): the audience's e-mail addresses and chat
  targets (`slack:C0123`, `teams:https://...`, `google_chat:https://...`, audience_targets.py),
  a list or a text separated by commas, semicolons or spaces; required when the report has an
  email delivery (the addresses take the place of the delivery's recipients); where the column
  is there, each row names a target for each chat method the report delivers by (it takes the
  place of the delivery's channel or URL);
- the key column (`key_column`), which names the audience (and is a parameter too when the
  report takes one of that name); without one, a hash of the row names it;
- overrides, each optional: `file_name` (a file name template), `locale` and `timezone` (for
  rendering), `subject` (the email subject template);
- every other column is a parameter of the report's query (its value replaces the run's).

Bad input is refused naming the column, or the row and key: a driver row without recipients, a
duplicate key, a column that is no parameter of the report, a time zone that does not exist.
Nothing is sent until every row of the driver has been read and checked.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from reporthubd import domain, templates
from reporthubd.config import Settings
from reporthubd.connectors import base as connectors
from reporthubd.connectors import params
from reporthubd.engine import audience_targets, parameters
from reporthubd.store import executions
from reporthubd.store.audiences import Audience, AudienceDriver
from reporthubd.timeutil import utcnow

OVERRIDES = ("file_name", "locale", "timezone", "subject")
KEY_LIMIT = 255
_SPLIT = re.compile(r"[,;\s]+")


class AudienceProblem(ValueError):
    """A driver or driver row that cannot be sent to; the message names the column or key."""


@dataclass(frozen=True, kw_only=True)
class ColumnPlan:
    """Where each part of an audience is in a driver row (resolved once from its columns)."""

    names: tuple[str, ...]
    key: int | None
    key_column: str | None
    recipients: int | None
    recipients_column: str
    overrides: tuple[tuple[str, int], ...]
    parameters: tuple[tuple[str, int], ...]
    needs_recipients: bool
    chat_methods: frozenset[domain.DeliveryMethod] = frozenset()
    """The report's chat methods: with a recipients column, each row names a target for each."""


def accepted_parameters(config: domain.ReportConfig, dialect: str) -> set[str]:
    """The parameters a report takes: its query's placeholders and its declared defaults."""
    return set(params.referenced(config.query_text, dialect=dialect)) | set(config.parameters)


def dialect_of(datasource: domain.Datasource) -> str:
    return "mysql" if datasource.type is domain.DatasourceType.MYSQL else "standard"


def needs_recipients(deliveries: Sequence[domain.Delivery]) -> bool:
    return any(d.method is domain.DeliveryMethod.EMAIL for d in deliveries)


def plan_columns(
    driver: AudienceDriver,
    columns: Sequence[str],
    *,
    accepted: set[str],
    report_name: str,
    recipients_required: bool,
    chat_methods: frozenset[domain.DeliveryMethod] = frozenset(),
) -> ColumnPlan:
    """Check a driver's columns against what the report takes; raise AudienceProblem."""
    names = tuple(columns)
    index = {name: i for i, name in enumerate(names)}
    if len(index) != len(names):
        doubled = sorted({n for n in names if names.count(n) > 1})
        raise AudienceProblem(f"driver query returns column {doubled[0]!r} more than once")
    if driver.key_column is not None and driver.key_column not in index:
        raise AudienceProblem(
            f"driver key_column {driver.key_column!r} is not a column of the driver query "
            f"(its columns: {', '.join(names)})"
        )
    recipients = index.get(driver.recipients_column)
    if recipients is None and recipients_required:
        raise AudienceProblem(
            f"driver query has no column {driver.recipients_column!r} (the recipients of each "
            f"audience), and report {report_name!r} has an email delivery"
        )
    taken = {driver.recipients_column, *OVERRIDES}
    parameter_columns = []
    for name in names:
        if name in taken or (name == driver.key_column and name not in accepted):
            continue
        if name not in accepted:
            known = ", ".join(sorted(accepted)) or "none"
            raise AudienceProblem(
                f"driver column {name!r} is not a parameter of report {report_name!r} "
                f"(it takes: {known})"
            )
        parameter_columns.append((name, index[name]))
    return ColumnPlan(
        names=names,
        key=index.get(driver.key_column) if driver.key_column else None,
        key_column=driver.key_column,
        recipients=recipients,
        recipients_column=driver.recipients_column,
        overrides=tuple((name, index[name]) for name in OVERRIDES if name in index),
        parameters=tuple(parameter_columns),
        needs_recipients=recipients_required,
        chat_methods=chat_methods if recipients is not None else frozenset(),
    )


def audience_of(plan: ColumnPlan, row: Sequence[Any], *, seq: int, burst_id: str) -> Audience:
    """One driver row as an audience; raise AudienceProblem naming the row and key."""
    values = {name: parameters.to_json({name: row[i]})[name] for name, i in plan.parameters}
    if plan.key is not None:
        raw = row[plan.key]
        if raw is None or str(raw).strip() == "":
            raise AudienceProblem(
                f"driver row {seq + 1} has an empty key in column {plan.key_column!r}"
            )
        key = str(raw).strip()
        if len(key) > KEY_LIMIT:
            raise AudienceProblem(
                f"driver row {seq + 1}: key {key[:40]!r}... in column {plan.key_column!r} is "
                f"longer than {KEY_LIMIT} characters"
            )
    else:
        document = json.dumps(
            parameters.to_json(dict(zip(plan.names, row, strict=True))), sort_keys=True
        )
        key = hashlib.sha256(document.encode()).hexdigest()[:32]
    recipients: tuple[str, ...] = ()
    if plan.recipients is not None:
        recipients = _recipients(row[plan.recipients])
    if plan.needs_recipients and not recipients:
        raise AudienceProblem(
            f"driver row {seq + 1} (audience {key!r}) has no recipients in column "
            f"{plan.recipients_column!r}"
        )
    where = f"driver row {seq + 1} (audience {key!r})"
    try:
        targets = audience_targets.parse(recipients)
    except audience_targets.TargetProblem as exc:
        raise AudienceProblem(f"{where}, column {plan.recipients_column!r}: {exc}") from None
    if plan.needs_recipients and not targets.emails:
        raise AudienceProblem(
            f"{where} has no e-mail address in column {plan.recipients_column!r} (the report "
            "has an email delivery)"
        )
    lacking = audience_targets.missing(targets, plan.chat_methods)
    if lacking:
        raise AudienceProblem(
            f"{where} names no {' or '.join(lacking)} target in column "
            f"{plan.recipients_column!r} (the report delivers by {', '.join(lacking)}: each "
            f"audience needs its own, e.g. {lacking[0]}:...)"
        )
    overrides: dict[str, str] = {}
    for name, i in plan.overrides:
        value = row[i]
        if value is None or str(value).strip() == "":
            continue
        overrides[name] = str(value).strip()
    zone = overrides.get("timezone")
    if zone is not None:
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise AudienceProblem(
                f"driver row {seq + 1} (audience {key!r}): timezone {zone!r} is not an IANA "
                "time zone"
            ) from None
    return Audience(
        burst_id=burst_id,
        key=key,
        seq=seq,
        recipients=recipients,
        parameters=values,
        overrides=overrides,
    )


def _recipients(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except ValueError:
                value = text
        else:
            value = text
    items = value if isinstance(value, list | tuple) else _SPLIT.split(str(value))
    out: dict[str, None] = {}
    for item in items:
        address = str(item).strip()
        if address:
            out.setdefault(address, None)
    return tuple(out)


class KeyGuard:
    """Refuses a key seen before in this pass over the driver (16 bytes kept per audience)."""

    def __init__(self) -> None:
        self._seen: set[bytes] = set()

    def check(self, audience: Audience) -> None:
        digest = hashlib.blake2b(audience.key.encode(), digest_size=16).digest()
        if digest in self._seen:
            raise AudienceProblem(
                f"duplicate audience key {audience.key!r} (driver row {audience.seq + 1})"
            )
        self._seen.add(digest)


async def read_driver(
    connector: connectors.Connector,
    driver: AudienceDriver,
    definitions: executions.RunDefinitions,
    resolved: Mapping[str, Any],
    *,
    burst_id: str,
    batch_size: int,
    timeout_seconds: float | None,
    execution_id: str | None = None,
) -> AsyncIterator[list[Audience]]:
    """The driver's audiences in batches, each row checked (AudienceProblem), keys unique."""
    try:
        params.check(driver.query_text, resolved, dialect=dialect_of(connector.datasource))
    except params.ParameterError as exc:
        raise AudienceProblem(f"driver query: {exc}") from None
    request = connectors.QueryRequest(
        sql=driver.query_text,
        parameters={k: v for k, v in resolved.items() if k in _referenced(driver, connector)},
        batch_size=batch_size,
        timeout_seconds=timeout_seconds,
        execution_id=execution_id,
    )
    guard = KeyGuard()
    seq = 0
    async with connector.stream(request) as result:
        plan = plan_columns(
            driver,
            [column.name for column in result.columns],
            accepted=accepted_parameters(definitions.config, dialect_of(definitions.datasource)),
            report_name=definitions.config.name,
            recipients_required=needs_recipients(definitions.deliveries),
            chat_methods=frozenset(audience_targets.chat_methods(definitions.deliveries)),
        )
        async for rows in result.batches():
            batch = []
            for row in rows:
                audience = audience_of(plan, row, seq=seq, burst_id=burst_id)
                guard.check(audience)
                batch.append(audience)
                seq += 1
            yield batch


def _referenced(driver: AudienceDriver, connector: connectors.Connector) -> set[str]:
    return set(params.referenced(driver.query_text, dialect=dialect_of(connector.datasource)))


def resolve_parent(
    settings: Settings, execution: domain.Execution, definitions: executions.RunDefinitions
) -> dict[str, Any]:
    """The parent run's resolved parameters (defaults, schedule, trigger; templates rendered),
    as a run's pipeline resolves them: the driver query takes them, and every child starts
    from them. Raises templates.TemplateError."""
    base = parameters.time_base(
        scheduled_for=execution.scheduled_for,
        created_at=execution.created_at,
        schedule=definitions.schedule,
        default_zone=ZoneInfo(settings.scheduler.timezone),
        now=utcnow(),
    )
    variables = templates.time_variables(
        base.logical_time, base.zone, window_start=base.window_start, window_end=base.window_end
    )
    variables.update(
        parameters.business_day_variables(definitions.schedule, base.logical_time, base.zone)
    )
    merged = parameters.merge(
        definitions.config.parameters,
        definitions.schedule.parameters if definitions.schedule else None,
        execution.parameters,
    )
    return parameters.to_json(parameters.resolve(merged, variables))


def for_audience(
    definitions: executions.RunDefinitions, audience: Audience
) -> executions.RunDefinitions:
    """A child run's definitions: the audience's addresses in place of each email delivery's
    recipients, its chat target in place of each chat delivery's, its file name, locale, time
    zone and subject in place of the report's."""
    config = definitions.config
    overrides = audience.overrides
    options = dict(config.format_options)
    for name in ("locale", "timezone"):
        if name in overrides:
            options[name] = overrides[name]
    config = dataclasses.replace(
        config,
        format_options=options,
        file_name_template=overrides.get("file_name", config.file_name_template),
    )
    deliveries = []
    targets = audience_targets.parse(audience.recipients)
    for delivery in definitions.deliveries:
        delivery = audience_targets.addressed(delivery, targets)
        if delivery.method is domain.DeliveryMethod.EMAIL:
            delivery_config = dict(delivery.delivery_config)
            if "subject" in overrides:
                delivery_config["subject"] = overrides["subject"]
            delivery = dataclasses.replace(
                delivery,
                delivery_config=delivery_config,
                recipients=tuple(
                    domain.Recipient(
                        id=0,
                        delivery_id=delivery.id,
                        recipient_type=domain.RecipientType.TO,
                        email=address,
                        name=None,
                    )
                    for address in targets.emails
                ),
            )
        deliveries.append(delivery)
    return dataclasses.replace(definitions, config=config, deliveries=tuple(deliveries))


def targets(definitions: executions.RunDefinitions, audience: Audience) -> list[str]:
    """Where an audience's file goes, for a dry run: `email:ADDRESS` per recipient of each email
    delivery, `METHOD:TARGET` for a chat delivery the audience names a target for (a webhook URL
    without its query), `METHOD:NAME` for the others (their templates render at send time)."""
    out: list[str] = []
    chat = audience_targets.parse(audience.recipients)
    for delivery in for_audience(definitions, audience).deliveries:
        target = chat.chat_target(delivery.method)
        if delivery.method is domain.DeliveryMethod.EMAIL:
            out += [f"email:{r.email}" for r in delivery.recipients]
        elif target is not None:
            out.append(audience_targets.shown(f"{delivery.method.value}:{target}"))
        else:
            out.append(f"{delivery.method.value}:{delivery.name or delivery.id}")
    return out
