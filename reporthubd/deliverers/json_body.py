"""The webhook delivery's templated body: Jinja in the shared sandbox, every value JSON-escaped.

`body` is Jinja text (`reporthubd.templates`: immutable sandbox, undefined names are errors)
rendered over the attempt's variables (templating.py) plus `metadata` (the document the webhook
sends by default), `file` (name, size, sha256, media_type) and `download_url`. Each `{{ ... }}`
is written JSON-escaped, so a value can never break out of its string or its place:

- a string becomes its JSON string content without the quotes: write `"{{ report_name }}"`
  (a quote, backslash or newline inside it comes out as `\\"`, `\\\\`, `\\n`);
- a number, true/false and None become JSON literals (`{{ row_count }}`, `null`);
- a mapping or list becomes compact JSON (`{{ parameters }}`), a date or datetime its ISO text;
- `| tojson` output is left as it is.

With a JSON `content_type` (the default, `application/json`) the rendered body must parse as
JSON, or the attempt fails for good naming `body`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date, datetime, time
from functools import cache
from typing import TYPE_CHECKING, Any

from reporthubd import templates
from reporthubd.deliverers.base import DeliveryError

if TYPE_CHECKING:
    from jinja2.sandbox import ImmutableSandboxedEnvironment


def escape(value: Any) -> str:
    """What one `{{ expression }}` writes into the body."""
    from markupsafe import Markup

    if isinstance(value, Markup):  # `| tojson`: already JSON
        return str(value)
    if value is None or isinstance(value, bool | int | float):
        return json.dumps(value)
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value, default=_plain, ensure_ascii=False, separators=(",", ":"))
    if isinstance(value, datetime | date | time):
        value = value.isoformat()
    return json.dumps(str(value), ensure_ascii=False)[1:-1]


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return str(value)


@cache
def _environment() -> ImmutableSandboxedEnvironment:
    return templates.sandbox(finalize=escape)


def render(template: str, variables: Mapping[str, Any], *, json_type: bool) -> bytes:
    """The rendered body; a template that fails, or a JSON body that does not parse, is a
    DeliveryError naming `body`."""
    import jinja2

    try:
        text = _environment().from_string(template).render(**variables)
    except jinja2.TemplateError as exc:
        raise DeliveryError(f"body: template failed: {exc}") from None
    except (ArithmeticError, LookupError, TypeError, ValueError, OverflowError) as exc:
        raise DeliveryError(f"body: template failed: {type(exc).__name__}: {exc}") from None
    if json_type:
        try:
            json.loads(text)
        except ValueError as exc:
            raise DeliveryError(f"body: the rendered body is not JSON ({exc})") from None
    return text.encode()


def check(template: Any) -> str | None:
    """A syntax check of a `body` for `reporthubd check` and `apply`: the problem, or None."""
    import jinja2

    if not isinstance(template, str) or not template.strip():
        return "delivery_config.body: must be a non-empty template string"
    try:
        _environment().parse(template)
    except jinja2.TemplateSyntaxError as exc:
        return f"delivery_config.body: template syntax error: {exc}"
    return None
