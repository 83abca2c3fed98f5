"""A report's own notification settings (report_configs.notify, revision 0009) and a
schedule's deadline (report_schedules.deadline). Pure: parsing and target resolution.

    notify = {owners = ["ann@example.com"],
              rules = [{events = ["failed", "recovered"], notify = ["owners"], suspend_after = 3}]}

A report without rules of its own follows the configured default rule
([notifications] default_rule), whose `owners` target reaches this report's owners. A deadline
is "HH:MM" or "HH:MM:SS" (the schedule's local time on the fire's day, the next day when that
is not after the fire; "07:30 Europe/Berlin" names another zone) or "+N" with a unit s, m or h
(that long after the fire).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from reporthubd import notify_rules
from reporthubd.notify_rules import OWNERS, Rule, RuleError

NOTIFY_KEYS = frozenset({"owners", "rules"})
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
_RELATIVE = re.compile(r"^\+(\d+)\s*([smh])$")
_UNITS = {"s": 1, "m": 60, "h": 3600}


@dataclass(frozen=True, kw_only=True)
class ReportNotify:
    owners: tuple[str, ...] = ()
    rules: tuple[Rule, ...] = ()


def parse_notify(raw: Mapping[str, Any] | None, *, key: str = "notify") -> ReportNotify:
    """The report's notify object; RuleError naming the key."""
    if raw is None:
        return ReportNotify()
    if not isinstance(raw, Mapping):
        raise RuleError(f"{key}: must be an object with owners and rules")
    unknown = sorted(set(raw) - NOTIFY_KEYS)
    if unknown:
        raise RuleError(f"{key}.{unknown[0]}: unknown key (known: owners, rules)")
    owners_raw = raw.get("owners") or []
    if not isinstance(owners_raw, list):
        raise RuleError(f"{key}.owners: must be a list of email addresses")
    owners: list[str] = []
    for i, owner in enumerate(owners_raw):
        if not isinstance(owner, str) or not _EMAIL.match(owner.strip()):
            raise RuleError(f"{key}.owners[{i}]: {owner!r} is not an email address")
        owners.append(owner.strip())
    rules_raw = raw.get("rules") or []
    if not isinstance(rules_raw, list):
        raise RuleError(f"{key}.rules: must be a list of rules")
    rules = []
    for i, rule in enumerate(rules_raw):
        if not isinstance(rule, Mapping):
            raise RuleError(f"{key}.rules[{i}]: must be an object (events, notify, ...)")
        rules.append(notify_rules.parse_rule(rule, key=f"{key}.rules[{i}]"))
    return ReportNotify(owners=tuple(owners), rules=tuple(rules))


def effective_rules(report: ReportNotify, default: Rule | None) -> tuple[Rule, ...]:
    """The report's rules, or the default rule when it has none."""
    if report.rules:
        return report.rules
    return (default,) if default is not None else ()


def targets(rule: Rule, owners: Sequence[str]) -> list[str]:
    """The rule's targets with `owners` replaced by one `email:` target per owner, in order,
    without repeats."""
    found: list[str] = []
    for target in rule.targets:
        for one in [f"email:{owner}" for owner in owners] if target == OWNERS else [target]:
            if one not in found:
                found.append(one)
    return found


@dataclass(frozen=True, kw_only=True)
class Deadline:
    text: str
    after: timedelta | None = None
    at: time | None = None
    zone: ZoneInfo | None = None
    """The deadline's own zone; None: the schedule's."""

    def due(self, fire: datetime, zone: ZoneInfo) -> datetime:
        """The instant by which the run of `fire` must have completed."""
        if self.after is not None:
            return fire + self.after
        assert self.at is not None
        zone = self.zone or zone
        local = fire.astimezone(zone)
        due = datetime.combine(local.date(), self.at, tzinfo=zone)
        if due <= local:
            due = datetime.combine(local.date() + timedelta(days=1), self.at, tzinfo=zone)
        return due


def parse_deadline(text: object, *, key: str = "deadline") -> Deadline:
    """'07:30', '07:30:15', '07:30 Europe/Berlin' or '+20s' / '+15m' / '+2h'; RuleError
    naming the key."""
    if not isinstance(text, str) or not text.strip():
        raise RuleError(f"{key}: must be a time of day 'HH:MM' or a delay such as '+20m'")
    value = text.strip()
    relative = _RELATIVE.match(value)
    if relative:
        seconds = int(relative.group(1)) * _UNITS[relative.group(2)]
        if not 0 < seconds <= 7 * 86400:
            raise RuleError(f"{key}: {value!r} must be more than 0 and at most 7 days")
        return Deadline(text=value, after=timedelta(seconds=seconds))
    clock, _, zone_name = value.partition(" ")
    zone: ZoneInfo | None = None
    if zone_name.strip():
        try:
            zone = ZoneInfo(zone_name.strip())
        except (ZoneInfoNotFoundError, ValueError):
            raise RuleError(f"{key}: unknown time zone {zone_name.strip()!r}") from None
    try:
        at = time.fromisoformat(clock)
    except ValueError:
        raise RuleError(
            f"{key}: {value!r} is neither a time of day 'HH:MM[:SS]' nor a delay '+N' with "
            "unit s, m or h"
        ) from None
    if at.tzinfo is not None:
        raise RuleError(f"{key}: {value!r} carries an offset; it is in the schedule's zone")
    return Deadline(text=value, at=at, zone=zone)
