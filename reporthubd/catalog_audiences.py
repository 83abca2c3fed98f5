"""A report's driver query in the catalog TOML (issue 18): one `[reports.audiences]` table.

    [[reports]]
    name = "Branch statement"
    query = "SELECT ... WHERE branch = :branch"
    ...
    [reports.audiences]
    query = "SELECT code AS branch, manager_email AS recipients, locale FROM branches"
    key_column = "branch"          # optional: else a hash of each row names its audience
    recipients_column = "recipients"  # the default
    datasource = "warehouse"       # optional: the report's own datasource by default

Applied to `report_audience_drivers` (one row per report; removing the table from a report
deactivates its driver, `--prune` deletes it) and exported the same way. What the driver's rows
must hold is checked when it runs, by `reporthubd check` and by the dry run
(engine/audiences.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class AudienceSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    query: str = Field(min_length=1)
    datasource: str | None = Field(default=None, min_length=1, max_length=255)
    key_column: str | None = Field(default=None, min_length=1, max_length=255)
    recipients_column: str | None = Field(default=None, min_length=1, max_length=255)
    is_active: bool = True


def render(spec: AudienceSpec | None) -> tuple[str, Mapping[str, Any]] | None:
    """The `[reports.audiences]` table's header and values, or None."""
    if spec is None:
        return None
    return (
        "[reports.audiences]",
        {
            "query": spec.query,
            "datasource": spec.datasource,
            "key_column": spec.key_column,
            "recipients_column": spec.recipients_column,
            "is_active": None if spec.is_active else False,
        },
    )
