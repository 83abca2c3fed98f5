"""The `[notifications]` section of the configuration (config.py includes it).

Kept apart from config.py so that the rule parsing it validates with (notify_rules.py) stays
beside the rest of the notification code; it imports nothing of the package but the rules.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from reporthubd import notify_rules

DEFAULT_RULE: dict[str, Any] = {
    "events": ["failed", "timeout", "missed", "retries_exhausted", "late", "recovered"],
    "notify": ["owners"],
}


class NotificationSettings(BaseModel):
    """Notices about a report's runs: the default rule, the links they carry, how they are sent."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", strict=True, use_attribute_docstrings=True
    )

    enabled: bool = True
    """Decide notices by the reports' rules (false: none are recorded; an alert's resolved
    notice still is, and what the ledger holds is still sent)."""
    default_rule: dict[str, Any] | None = Field(default_factory=lambda: dict(DEFAULT_RULE))
    """The rule of every report without rules of its own: {events = [...], notify = [...],
    remind_every_minutes = N, suspend_after = N}; targets 'owners' (the report's owners),
    'email:ADDRESS' or 'delivery:ID'. Set to {} for none."""
    console_url: str = ""
    """The base of the links a notice carries (e.g. https://reports.example.com); empty: the
    control plane's own address."""
    poll_interval_seconds: Annotated[float, Field(gt=0, le=300)] = 5.0
    """How often the sender looks for notices recorded by other nodes, due retries and
    notices of a node that died while sending (its own notices are sent at once)."""
    lease_seconds: Annotated[float, Field(ge=5, le=3600)] = 120.0
    """How long a node holds a notice it is sending before another node may take it over:
    longer than one send can take (the SMTP/HTTP timeouts)."""
    max_attempts: Annotated[int, Field(ge=1, le=100)] = 6
    """Attempts of one notice before it is FAILED for good."""
    retry_interval_seconds: Annotated[float, Field(gt=0, le=86400)] = 30.0
    """The wait after a notice's first failed attempt; doubled at each further one."""

    @field_validator("default_rule")
    @classmethod
    def _rule(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value:
            try:
                notify_rules.parse_rule(value, key="default_rule")
            except notify_rules.RuleError as exc:
                raise ValueError(str(exc)) from None
        return value or None

    @property
    def default(self) -> notify_rules.Rule | None:
        if not self.default_rule:
            return None
        return notify_rules.parse_rule(self.default_rule, key="notifications.default_rule")
