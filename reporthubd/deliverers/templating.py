"""Templates of delivery settings: `subject`, `body`, `key`, `file_name`, `sub_path`, `remote_dir`.

A template is Python `str.format` text over the run's variables, e.g.
`"{report_name}/{scheduled_for:%Y/%m}/{file_name}"` or `"sales-{parameters[region]}.csv"`.
Only names and `[key]` lookups into mappings are allowed (no attribute access), so a template
written by another service cannot reach into objects. Text with `{{ ... }}` is Jinja instead,
rendered in the shared sandbox (`reporthubd.templates`), like report file names. Variables:

- `report_name`, `report_id` (= `config_id`), `execution_id`, `schedule_id`, `trigger_type`
- `scheduled_for` and `now` (the run's logical time, as the engine defines it: the fire's time,
  or the run's start for a manual run; datetimes: format with `:%Y-%m-%d`), `date` (its date,
  ISO), `today`, `yesterday`, `tomorrow`, and the engine's other time variables when the engine
  built the job; `attempted_at` (UTC datetime of this attempt)
- `parameters` (mapping; each parameter is also a top-level name unless that name is taken)
- `row_count`, `file_name`, `file_stem`, `file_ext` (= `ext`)
- `delivery_id`, `delivery_name`, `attempt` (added per attempt)

Rendered paths are checked here too: `safe_relative_path` refuses absolute paths, `..` and
control characters, whatever the template or a parameter value contains.
"""

from __future__ import annotations

import _string  # type: ignore[import-not-found]
import string
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import PurePosixPath
from typing import Any

from reporthubd import domain, templates
from reporthubd.deliverers.base import Attempt, DeliveryError


def run_variables(
    *,
    execution_id: str,
    config: domain.ReportConfig,
    parameters: Mapping[str, Any],
    scheduled_for: datetime | None,
    started_at: datetime | None = None,
    row_count: int | None = None,
    file_name: str | None = None,
    schedule_id: int | None = None,
    trigger_type: str | None = None,
) -> dict[str, Any]:
    """The template variables of one run (what the engine puts into `DeliveryJob.variables`)."""
    logical = scheduled_for or started_at or datetime.now(UTC)
    stem, ext = split_file_name(file_name or "")
    variables: dict[str, Any] = {
        str(key): value for key, value in parameters.items() if str(key).isidentifier()
    }
    variables |= {
        "report_name": config.name,
        "report_id": config.id,
        "config_id": config.id,
        "execution_id": execution_id,
        "schedule_id": schedule_id,
        "trigger_type": trigger_type,
        "scheduled_for": logical,
        "now": logical,
        "today": logical.date(),
        "yesterday": logical.date() - timedelta(days=1),
        "tomorrow": logical.date() + timedelta(days=1),
        "date": logical.date().isoformat(),
        "ext": ext,
        "extension": ext,
        "parameters": dict(parameters),
        "row_count": row_count,
        "file_name": file_name,
        "file_stem": stem,
        "file_ext": ext,
    }
    return variables


def attempt_variables(attempt: Attempt) -> dict[str, Any]:
    """The job's variables plus what belongs to this attempt."""
    job = attempt.job
    variables = dict(job.variables)
    if "report_name" not in variables:  # a job built by hand: derive the basics
        variables = (
            run_variables(
                execution_id=job.execution_id,
                config=job.config,
                parameters={},
                scheduled_for=None,
                row_count=job.file.row_count if job.file else None,
                file_name=job.file.name if job.file else None,
            )
            | variables
        )
    variables |= {
        "delivery_id": attempt.delivery.id,
        "delivery_name": attempt.delivery.name,
        "attempt": attempt.number,
        "attempted_at": datetime.now(UTC),
    }
    return variables


def split_file_name(name: str) -> tuple[str, str]:
    """A file name as (stem, extension): `report.csv.gz` is (`report`, `csv.gz`)."""
    if "." not in name.lstrip("."):
        return name, ""
    stem, _, ext = name.rpartition(".")
    if stem.endswith((".csv", ".json", ".tsv")):  # report.csv.gz → report, csv.gz
        stem, _, inner = stem.rpartition(".")
        ext = f"{inner}.{ext}"
    return stem, ext


class _Formatter(string.Formatter):
    def __init__(self, what: str) -> None:
        self.what = what

    def get_field(self, field_name: str, args: Any, kwargs: Any) -> tuple[Any, str]:
        first, rest = _string.formatter_field_name_split(field_name)
        if isinstance(first, int) or first == "":
            raise DeliveryError(
                f"{self.what}: positional fields are not allowed ({{{field_name}}})"
            )
        if first not in kwargs:
            known = ", ".join(sorted(k for k in kwargs if not k.startswith("_")))
            raise DeliveryError(
                f"{self.what}: unknown variable {first!r} in template (known: {known})"
            )
        value = kwargs[first]
        for is_attribute, key in rest:
            if is_attribute:
                raise DeliveryError(
                    f"{self.what}: attribute access is not allowed in templates ({{{field_name}}})"
                )
            if not isinstance(value, Mapping) or key not in value:
                raise DeliveryError(f"{self.what}: {{{field_name}}} has no value for {key!r}")
            value = value[key]
        return value, first


def render(template: str, variables: Mapping[str, Any], *, what: str) -> str:
    """Render one template; a bad template is a `DeliveryError` naming the setting.
    Jinja text (`{{ ... }}`, as report file names may use) goes to the shared sandbox."""
    if "{{" in template or "{%" in template:
        return _render_jinja(template, variables, what=what)
    try:
        return _Formatter(what).vformat(template, (), dict(variables))
    except DeliveryError:
        raise
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise DeliveryError(f"{what}: cannot render template {template!r}: {exc}") from None


def _render_jinja(template: str, variables: Mapping[str, Any], *, what: str) -> str:
    try:
        return templates.render_text(template, variables, what=what)
    except templates.TemplateError as exc:
        raise DeliveryError(str(exc)) from None


def _check_text(rendered: str, what: str) -> None:
    if any(ord(ch) < 32 or ch == "\x7f" for ch in rendered):
        raise DeliveryError(f"{what}: rendered value contains control characters")


def safe_relative_path(rendered: str, *, what: str) -> PurePosixPath:
    """A rendered relative path that cannot leave its base: no absolute path, no `..`."""
    _check_text(rendered, what)
    normalized = rendered.replace("\\", "/")
    path = PurePosixPath(normalized)
    if path.is_absolute() or normalized.startswith("/"):
        raise DeliveryError(f"{what}: {rendered!r} is absolute; it must stay under the base path")
    if any(part == ".." for part in path.parts):
        raise DeliveryError(f"{what}: {rendered!r} contains '..'; it must stay under the base path")
    return PurePosixPath(*[part for part in path.parts if part not in ("", ".")])


def safe_file_name(rendered: str, *, what: str) -> str:
    """A rendered file name: one path component, not empty, not `.` or `..`."""
    _check_text(rendered, what)
    name = rendered.strip()
    if not name or name in {".", ".."} or "/" in name or "\\" in name:
        raise DeliveryError(f"{what}: {rendered!r} is not a file name")
    return name


def remote_path(rendered: str, *, what: str) -> PurePosixPath:
    """A directory on a remote server (SFTP): absolute allowed, `..` never."""
    _check_text(rendered, what)
    path = PurePosixPath(rendered or ".")
    if any(part == ".." for part in path.parts):
        raise DeliveryError(f"{what}: {rendered!r} contains '..'")
    return path
