"""A catalog report's workbook sheets (formats.workbook, `[[reports.format_options.sheets]]`):
the datasources they name, which `apply` checks (in the file or the store) and `--prune` keeps."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from reporthubd.config import Problem


class _Report(Protocol):
    @property
    def format_options(self) -> Mapping[str, Any]: ...


def _sheets(report: _Report) -> list[tuple[int, str]]:
    raw = report.format_options.get("sheets")
    if not isinstance(raw, list):
        return []
    return [
        (n, item["datasource"])
        for n, item in enumerate(raw, start=1)
        if isinstance(item, Mapping) and isinstance(item.get("datasource"), str)
    ]


def datasources(reports: Iterable[_Report]) -> set[str]:
    """The names the reports' sheets use."""
    return {name for report in reports for _, name in _sheets(report)}


def unknown_datasources(reports: Iterable[_Report], known: set[str]) -> list[Problem]:
    """Sheets on a datasource in neither the file nor the store, naming the key."""
    return [
        Problem(
            where=f"reports[{i}].format_options.sheets[{n}].datasource",
            message=f"no datasource named {name!r} (in neither the file nor the store)",
        )
        for i, report in enumerate(reports)
        for n, name in _sheets(report)
        if name not in known
    ]
