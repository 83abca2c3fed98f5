"""config.toml.example, generated from the settings model so the reference cannot drift.

`python -m reporthubd.config_reference > config.toml.example` rewrites it; a test fails when the
file in the repository differs from what this renders, or when a setting has no description.
"""

from __future__ import annotations

import json
import textwrap
from typing import Any

from pydantic.fields import FieldInfo

from reporthubd import seed_env
from reporthubd.config import ENV_PREFIX, SECTIONS

HEADER = f"""\
# reporthubd configuration: every setting, with its default, commented out.
# Generated from reporthubd/config.py by `python -m reporthubd.config_reference`;
# do not edit by hand.
#
# Where the file is read from: `-c FILE`, else $REPORTHUBD_CONFIG,
# else /etc/reporthubd/config.toml.
# Every key can be overridden from the environment as {ENV_PREFIX}<SECTION>_<KEY> in upper case,
# e.g. {ENV_PREFIX}STORE_URL or {ENV_PREFIX}EXECUTION_MAX_CONCURRENT_EXECUTIONS. The value is read
# as a TOML value when it parses as one (10, true, "text", {{env = "X"}}), else as a plain string.
# Secrets (passwords) may be inline, {{env = "NAME"}} or {{file = "/path"}}.
#
# The two-service design's variables (DB_HOST, DB_PORT, DB_USER, DB_PASSWORD, DB_NAME,
# EXECUTION_API_PORT, SCHEDULER_API_PORT, ...) are read too, from the environment or from
# ./.env (${seed_env.ENV_FILE_VARIABLE} names another file; empty: none), under this file and
# {ENV_PREFIX}* variables: see docs/configuration.md. `reporthubd check` shows each value's source.
"""


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dict):  # an inline table: {key = value, ...}
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    return json.dumps(value, ensure_ascii=False)


def undocumented() -> list[str]:
    """Settings without a description: each is a defect of the reference."""
    return [
        f"{section}.{name}"
        for section, model in SECTIONS.items()
        for name, field in model.model_fields.items()
        if not (field.description or "").strip()
    ]


def _render_field(name: str, field: FieldInfo) -> list[str]:
    lines = [f"# {line}" for line in textwrap.wrap(field.description or "", 96)]
    default = field.get_default(call_default_factory=True)
    if default is None:
        lines.append(f"# {name} =        (unset by default)")
    else:
        lines.append(f"# {name} = {_toml_value(default)}")
    return lines


def render_example() -> str:
    out = [HEADER]
    for section, model in SECTIONS.items():
        doc = (model.__doc__ or "").strip().splitlines()
        out.append(f"[{section}]")
        if doc:
            out.extend(f"# {line}".rstrip() for line in doc)
        for name, field in model.model_fields.items():
            out.extend(_render_field(name, field))
            out.append("")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def render_markdown() -> str:
    """docs/configuration.md: every setting as a table row with its default."""
    out = [
        "# Configuration reference",
        "",
        "Generated from `reporthubd/config.py` by "
        "`python -m reporthubd.config_reference --markdown > docs/configuration.md`; a test fails "
        "when it is stale. The same settings, commented, are in `config.toml.example`.",
        "",
        f"Environment overrides: `{ENV_PREFIX}<SECTION>_<KEY>` in upper case (e.g. "
        f"`{ENV_PREFIX}STORE_URL`), read as a TOML value when it parses as one, else as a string. "
        'Secrets may be inline, `{env = "NAME"}` or `{file = "/path"}`.',
        "",
    ]
    out += seed_mapping_markdown()
    for section, model in SECTIONS.items():
        out += [f"## [{section}]", "", (model.__doc__ or "").strip(), ""]
        out += ["| key | default | meaning |", "|---|---|---|"]
        for name, field in model.model_fields.items():
            default = field.get_default(call_default_factory=True)
            shown = "unset" if default is None else f"`{_toml_value(default)}`"
            meaning = " ".join((field.description or "").split()).replace("|", "\\|")
            out.append(f"| `{section}.{name}` | {shown} | {meaning} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def seed_mapping_markdown() -> list[str]:
    """The compatibility mapping of reporthubd/seed_env.py, as a section of the reference."""
    out = [
        "## The two-service design's variables",
        "",
        "Read from the environment or from a `.env` file (python-dotenv; `.env` in the working "
        f"directory, or the file `${seed_env.ENV_FILE_VARIABLE}` names; an empty value reads "
        "none). An exported variable wins over the file's line. Precedence, highest first: "
        f"`{ENV_PREFIX}*` variables, the TOML file, these names, the defaults. A store given "
        "both here and explicitly must name the same database, or loading fails naming both "
        "sources; any other setting given both ways takes the explicit value, with a notice. "
        "An unknown `DB_*` variable is a notice. `reporthubd check` prints each setting's "
        "source.",
        "",
        "| variables | setting | value |",
        "|---|---|---|",
    ]
    for mapped in seed_env.MAPPING:
        names = ", ".join(f"`{name}`" for name in mapped.names)
        out.append(f"| {names} | `{mapped.setting}` | {mapped.rule} |")
    out.append("")
    return out


if __name__ == "__main__":
    import sys

    print(render_markdown() if "--markdown" in sys.argv else render_example(), end="")
