"""The email's body: what a reader sees before opening the file.

`compose()` gathers the variables below and renders two templates with them: the HTML part
(`email_templates/default.html`, or the delivery's `html_template`) and the plain-text
alternative (`email_templates/default.txt`, or `text_template`). Both are Jinja in a sandbox
(jinja2.sandbox.ImmutableSandboxedEnvironment, autoescaped for HTML, undefined names are errors).
The HTML's `<style>` is then inlined into `style` attributes by css-inline (mail clients drop
`<style>`), which is told never to fetch a remote stylesheet. The chart travels as a CID image
attached to the HTML part; nothing in the default template refers to anything outside the mail.

Variables (the same for a custom template):

- `title` (delivery `title`, else the report's `format_options.title`, else its name),
  `report_name`, `intro` (the rendered `body` setting), `execution_id`, `file_name`, `link`
- `period`: the run's logical period (window start – end, or the scheduled time) as the locale's
  text in the audience's zone
- `parameters` (name → text) and `facts`: (label, text) pairs of the summary (period, rows,
  parameters, file)
- `row_count`, `row_count_text`, `status` (one line: rows, file, how it travels), `status_ok`
- `columns` (each `label`, `align`, `css`), `rows` (each cell `text`, `css`, `style` from a
  highlight), `totals` (cells, or None), `more_rows` and `more_rows_text`: the inline table of
  the first `preview_rows` rows in the column formats, captured while the file was written
  (formats.capture), for every output format; a CSV written on the database's fast path is read
  back instead (its raw text)
- `chart`: `cid`, `width`, `height`, `alt`, `title`, or None
- `lang`: the locale's language

Locale and zone: delivery_config `locale` / `timezone` (the audience), else the report's
format_options, else en_US and the configured zone.
"""

from __future__ import annotations

import csv
import gzip
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from reporthubd import domain
from reporthubd.deliverers.base import Attempt, DeliveryError, ProducedFile
from reporthubd.deliverers.common import Options

TEMPLATES: Final = Path(__file__).parent / "email_templates"
DEFAULT_PREVIEW_ROWS: Final = 10
MAX_PREVIEW_ROWS: Final = 200


@dataclass(frozen=True, kw_only=True)
class Image:
    cid: str
    """Without the angle brackets."""
    data: bytes
    filename: str


@dataclass(frozen=True, kw_only=True)
class Body:
    text: str
    html: str
    images: list[Image] = field(default_factory=list)
    variables: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Preview:
    """The captured preview of a produced file (formats.capture), or a CSV read back."""

    columns: list[dict[str, Any]]
    rows: list[list[str | None]]
    paints: list[list[Any]] | None = None
    totals: list[str | None] | None = None
    chart: dict[str, Any] | None = None
    chart_png: bytes | None = None


def preview_rows(options: Options) -> int:
    rows = options.integer("preview_rows", DEFAULT_PREVIEW_ROWS)
    if not 0 <= rows <= MAX_PREVIEW_ROWS:
        raise DeliveryError(f"delivery_config.preview_rows: must be 0 to {MAX_PREVIEW_ROWS}")
    return rows


def read_preview(file: ProducedFile, rows: int, config: domain.ReportConfig) -> Preview | None:
    """What the run captured beside the file; for a CSV without a capture of its rows (the
    database rendered it), its header and first rows read back. Blocking: call off the loop."""
    from reporthubd.formats import capture

    data = capture.load(file.path)
    chart = data.get("chart") if data else None
    png = None
    if isinstance(chart, dict):
        try:
            png = capture.chart_path(file.path).read_bytes()
        except OSError:
            chart = None
    if data and data.get("preview_from") != "csv":
        return Preview(
            columns=list(data.get("columns") or []),
            rows=list(data.get("rows") or [])[:rows],
            paints=data.get("paints"),
            totals=data.get("totals"),
            chart=chart,
            chart_png=png,
        )
    table = _read_csv(file, rows, config) if rows else None
    if table is None:
        return Preview(columns=[], rows=[], chart=chart, chart_png=png) if png else None
    head, *body = table
    return Preview(
        columns=[{"label": name, "align": "left"} for name in head],
        rows=[list(r) for r in body],
        chart=chart,
        chart_png=png,
    )


def _read_csv(file: ProducedFile, rows: int, config: domain.ReportConfig) -> list[list[str]] | None:
    name = file.name.lower()
    if not (name.endswith(".csv") or name.endswith(".csv.gz")):
        return None
    delimiter = str(config.format_options.get("delimiter", ",") or ",")[:1]
    opener: Any = gzip.open if name.endswith(".gz") else open
    try:
        with opener(file.path, "rt", encoding="utf-8-sig", newline="") as handle:
            found = []
            for line in csv.reader(handle, delimiter=delimiter):
                found.append([cell[:200] for cell in line[:30]])
                if len(found) > rows:
                    break
            return found
    except (OSError, UnicodeDecodeError, csv.Error):
        return None


# -- variables ----------------------------------------------------------------------------------


def _locale_and_zone(options: Options, config: domain.ReportConfig, default_zone: str) -> Any:
    import babel

    fmt = config.format_options
    name = options.text("locale") or fmt.get("locale") or "en_US"
    try:
        locale = babel.Locale.parse(str(name).replace("-", "_"))
    except (babel.UnknownLocaleError, ValueError, TypeError):
        raise DeliveryError(f"delivery_config.locale: unknown locale {name!r}") from None
    zone_name = options.text("timezone") or fmt.get("timezone") or default_zone
    try:
        zone = ZoneInfo(str(zone_name))
    except (ZoneInfoNotFoundError, ValueError):
        raise DeliveryError(f"delivery_config.timezone: unknown time zone {zone_name!r}") from None
    return locale, zone


def variables(
    *,
    attempt: Attempt,
    run: Mapping[str, Any],
    intro: str,
    options: Options,
    preview: Preview | None,
    link: str | None,
    attached: str | None,
    default_zone: str = "UTC",
) -> tuple[dict[str, Any], list[Image]]:
    """The template variables (see the module docstring) and the images they refer to."""
    import babel.dates
    import babel.numbers

    config = attempt.job.config
    locale, zone = _locale_and_zone(options, config, default_zone)
    file = attempt.job.file

    def when(value: datetime) -> str:
        return str(babel.dates.format_datetime(value, "medium", tzinfo=zone, locale=locale))

    start, end = run.get("window_start"), run.get("window_end")
    scheduled = run.get("scheduled_for")
    if isinstance(start, datetime) and isinstance(end, datetime):
        period = f"{when(start)} – {when(end)}"
    elif isinstance(scheduled, datetime):
        period = when(scheduled)
    else:
        period = ""
    if period and zone.key != "UTC":
        period += f" ({zone.key})"
    rows = file.row_count if file is not None else int(run.get("row_count") or 0)
    rows_text = str(babel.numbers.format_decimal(rows, locale=locale))
    parameters = {str(k): _text(v) for k, v in (run.get("parameters") or {}).items()}
    title = options.text("title") or str(config.format_options.get("title") or "") or config.name
    facts: list[tuple[str, str]] = []
    if period:
        facts.append(("Period", period))
    facts.append(("Rows", rows_text))
    facts += list(parameters.items())
    status, status_ok = _status(rows_text, file, attached, link)
    out: dict[str, Any] = {
        "title": title,
        "report_name": config.name,
        "intro": intro,
        "execution_id": attempt.job.execution_id,
        "file_name": file.name if file else None,
        "link": link,
        "period": period,
        "parameters": parameters,
        "facts": facts,
        "row_count": rows,
        "row_count_text": rows_text,
        "status": status,
        "status_ok": status_ok,
        "columns": [],
        "rows": [],
        "totals": None,
        "more_rows": 0,
        "more_rows_text": "",
        "chart": None,
        "lang": locale.language,
    }
    images: list[Image] = []
    if preview is not None:
        _table(out, preview, rows, locale)
        if preview.chart and preview.chart_png:
            cid = f"chart-{attempt.job.execution_id}@reporthubd"
            chart = preview.chart
            kind = str(chart.get("type", "chart")).capitalize()
            out["chart"] = {
                "cid": cid,
                "width": round(float(chart["width"])),
                "height": round(float(chart["height"])),
                "title": chart.get("title") or "",
                "alt": f"{kind} chart: {chart.get('title') or ', '.join(chart.get('y') or [])}",
            }
            images.append(Image(cid=cid, data=preview.chart_png, filename="chart.png"))
    return out, images


def _text(value: Any) -> str:
    from reporthubd.formats import values

    return values.text(value)


def _status(
    rows_text: str, file: ProducedFile | None, attached: str | None, link: str | None
) -> tuple[str, bool]:
    if file is None:
        return f"Completed with {rows_text} rows; no file.", False
    size = _size(file.size)
    if link:
        return f"Completed: {rows_text} rows. {file.name} ({size}) is too large: link below.", False
    how = f"attached as {attached}" if attached and attached != file.name else "attached"
    return f"Completed: {rows_text} rows, {file.name} ({size}) {how}.", True


def _size(size: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024  # type: ignore[assignment]
    return str(size)


def _table(out: dict[str, Any], preview: Preview, rows: int, locale: Any) -> None:
    import babel.numbers

    css = {"right": "num", "center": "center", "left": ""}
    columns = [
        {
            "label": c.get("label", ""),
            "align": c.get("align", "left"),
            "css": css.get(c.get("align", "left"), ""),
        }
        for c in preview.columns
    ]
    table = []
    for r, row in enumerate(preview.rows):
        paints = preview.paints[r] if preview.paints and r < len(preview.paints) else None
        cells = []
        for c, text in enumerate(row):
            style = ""
            paint = paints[c] if paints and c < len(paints) else None
            if paint:
                fill, color = paint
                style = "".join(
                    [
                        f"background-color: {fill};" if fill else "",
                        f"color: {color};" if color else "",
                    ]
                )
            cells.append(
                {
                    "text": "" if text is None else text,
                    "css": columns[c]["css"] if c < len(columns) else "",
                    "style": style,
                }
            )
        table.append(cells)
    out["columns"], out["rows"] = columns, table
    if preview.totals and table:
        out["totals"] = [
            {
                "text": (t if t is not None else ("Total" if c == 0 else "")),
                "css": columns[c]["css"] if c < len(columns) else "",
            }
            for c, t in enumerate(preview.totals)
        ]
    more = max(0, rows - len(table))
    out["more_rows"] = more if table else 0
    if table and more:
        shown = babel.numbers.format_decimal(len(table), locale=locale)
        total = babel.numbers.format_decimal(rows, locale=locale)
        out["more_rows_text"] = f"The first {shown} of {total} rows; all of them are in the file."


# -- rendering ----------------------------------------------------------------------------------


@cache
def _environment(autoescape: bool) -> Any:
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    return ImmutableSandboxedEnvironment(
        undefined=jinja2.StrictUndefined,
        autoescape=autoescape,
        trim_blocks=False,
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
    )


def render(template: str | None, default: str, values: Mapping[str, Any], *, key: str) -> str:
    """A custom template (text) or the default one (a file name), over `values`."""
    import jinja2

    env = _environment(default.endswith(".html"))
    try:
        compiled = env.from_string(template) if template else env.get_template(default)
        return str(compiled.render(**values))
    except jinja2.TemplateError as exc:
        raise DeliveryError(f"delivery_config.{key}: the template failed: {exc}") from None
    except (ArithmeticError, LookupError, TypeError, ValueError) as exc:
        raise DeliveryError(
            f"delivery_config.{key}: the template failed: {type(exc).__name__}: {exc}"
        ) from None


@cache
def _inliner() -> Any:
    import css_inline

    return css_inline.CSSInliner(
        load_remote_stylesheets=False, keep_style_tags=False, keep_link_tags=False
    )


def inline_css(html: str) -> str:
    """`<style>` rules moved into `style` attributes (css-inline); remote stylesheets are never
    fetched."""
    return str(_inliner().inline(html))


def compose(
    *,
    attempt: Attempt,
    run: Mapping[str, Any],
    intro: str,
    options: Options,
    preview: Preview | None,
    link: str | None,
    attached: str | None,
    default_zone: str = "UTC",
) -> Body:
    """The HTML and plain-text parts and their images. Blocking: call off the loop."""
    values, images = variables(
        attempt=attempt,
        run=run,
        intro=intro,
        options=options,
        preview=preview,
        link=link,
        attached=attached,
        default_zone=default_zone,
    )
    html = render(options.text("html_template"), "default.html", values, key="html_template")
    text = render(options.text("text_template"), "default.txt", values, key="text_template")
    return Body(text=_tidy(text), html=inline_css(html), images=images, variables=values)


def _tidy(text: str) -> str:
    """Runs of blank lines left by the template's blocks, as one."""
    lines: list[str] = []
    for line in text.splitlines():
        line = line.rstrip()
        if line or (lines and lines[-1]):
            lines.append(line)
    return "\n".join(lines).strip() + "\n"
