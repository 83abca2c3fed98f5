"""What `reporthubd check` says about conditional alerts: each active report whose alert
(report_configs.alert) the daemon would refuse, the problem naming its key."""

from __future__ import annotations

from collections.abc import Iterable

from reporthubd import alert_rules, domain


def problems(configs: Iterable[domain.ReportConfig]) -> list[domain.RowError]:
    found: list[domain.RowError] = []
    for config in configs:
        if config.alert is None:
            continue
        try:
            alert_rules.parse_alert(config.alert, key="alert")
        except alert_rules.AlertError as exc:
            found.append(
                domain.RowError(
                    table="report_configs", row_id=config.id, problems=(f"{config.name!r}: {exc}",)
                )
            )
    return found
