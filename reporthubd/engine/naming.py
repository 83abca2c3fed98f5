"""File names from `report_configs.file_name_template`, sanitised.

The template is either Jinja (`{{ report_name }}_{{ now | fmt('%Y%m%d') }}`, see
`reporthubd.templates`) or simple fields (`{report_name}_{now:%Y%m%d}`, the style delivery templates
use: names with an optional format spec, nothing else). Variables: everything the parameters see
(`now`, `today`, `window_start`, ...), every resolved parameter by name and under `parameters`,
plus `report_name`, `report_id` / `config_id`, `execution_id`, `schedule_id`, `trigger_type`,
`date` (the logical date, ISO) and `ext` / `extension`.

The result is sanitised: path separators, characters Windows refuses and control characters
become `_`, `..` is collapsed, leading dots and spaces are dropped, the length is capped, and the
format's extension is appended when the name does not end with it already.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from typing import Any

from reporthubd import domain, templates

DEFAULT_TEMPLATE = "{report_name}_{now:%Y%m%d_%H%M%S}"
MAX_NAME_LENGTH = 180
_SIMPLE_FIELD = re.compile(r"\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::(?P<spec>[^{}]*))?\}")
_UNSAFE = re.compile(r'[/\\:*?"<>|\x00-\x1f\x7f]')


def render(template: str | None, variables: Mapping[str, Any], *, extension: str) -> str:
    """The sanitised file name (raises templates.TemplateError for a bad template)."""
    source = template or DEFAULT_TEMPLATE
    if templates.is_template(source):
        raw = templates.render_text(source, variables, what="file_name_template")
    else:
        raw = _render_simple(source, variables)
    return sanitise(raw, extension)


def variables(
    base: Mapping[str, Any],
    resolved: Mapping[str, Any],
    execution: domain.Execution,
    config: domain.ReportConfig,
    *,
    extension: str,
) -> dict[str, Any]:
    """A run's file name variables (see the module docstring): `base` (what the parameters
    see), the resolved parameters, and the run's own."""
    out: dict[str, Any] = dict(base)
    out |= {str(k): v for k, v in resolved.items() if str(k).isidentifier()}
    out |= {
        "parameters": dict(resolved),
        "report_name": config.name,
        "report_id": config.id,
        "config_id": config.id,
        "execution_id": execution.id,
        "schedule_id": execution.schedule_id,
        "trigger_type": execution.trigger_type.value,
        "date": base["now"].date().isoformat(),
        "ext": extension,
        "extension": extension,
    }
    return out


def _render_simple(template: str, variables: Mapping[str, Any]) -> str:
    def field(match: re.Match[str]) -> str:
        name = match.group("name")
        if name not in variables:
            raise templates.TemplateError(
                f"file_name_template: unknown variable {{{name}}} in {template!r}"
            )
        value = variables[name]
        spec = match.group("spec") or ""
        try:
            return format(value, spec) if spec else str(value)
        except (TypeError, ValueError) as exc:
            raise templates.TemplateError(
                f"file_name_template: cannot format {{{name}:{spec}}}: {exc}"
            ) from None

    return _SIMPLE_FIELD.sub(field, template)


def sanitise(name: str, extension: str) -> str:
    name = unicodedata.normalize("NFC", name)
    name = "".join(
        "_" if unicodedata.category(ch) in {"Cc", "Cf", "Zl", "Zp"} else ch for ch in name
    )
    name = _UNSAFE.sub("_", name)
    name = re.sub(r"\.{2,}", ".", name)
    name = re.sub(r"\s+", " ", name).strip(" .")
    suffix = f".{extension}" if extension else ""
    # "report.csv" with a gzip writer becomes "report.csv.gz", not "report.csv.csv.gz".
    for known in dict.fromkeys([suffix, "." + extension.split(".")[0]] if suffix else []):
        if name.lower().endswith(known.lower()):
            name = name[: -len(known)].rstrip(" .")
            break
    if len(name) > MAX_NAME_LENGTH:
        name = name[:MAX_NAME_LENGTH].rstrip(" .")
    return (name or "report") + suffix
