"""The CSV format's `format_options`, parsed and validated once, and the rendering they allow a
database to do itself (the fast path's `ServerCSV`).

Options (all optional):

| key | default | meaning |
|---|---|---|
| delimiter | `,` | one character; `tab` or `\\t` for TSV |
| quote_char | `"` | one character |
| quoting | `minimal` | `minimal`, `all`, `nonnumeric`, `none` (`none` needs `escape_char`) |
| escape_char | none | escapes delimiters/quotes when quoting is `none` |
| encoding | `utf-8` | `utf-8`, `utf-8-bom` (BOM for Excel; `utf-8-sig`), any Python codec |
| encoding_errors | `strict` | `strict` (a value that cannot be encoded fails the run), `replace` |
| header | `true` | write the column names first |
| null_text | `""` | text of NULL |
| true_text / false_text | `true` / `false` | text of booleans |
| date_format / datetime_format / time_format | ISO 8601 | `strftime` patterns |
| timezone | keep offset | IANA zone: timestamps with a zone are rendered in it (offset kept) |
| line_ending | `lf` | `lf` or `crlf` |
| compression | none | `gzip` (file `.csv.gz`) or `zip` (file `.zip` holding the `.csv`) |
| compression_level | 6 | 1-9 |
| truncate | `false` | engine option: past `max_rows`, cut the result instead of failing |
| truncated_note | see below | the last line written when the result was cut |
| columns, locale | none, `en_US` | column formats (formats.columns), validated |
| formatted | `false` | `true`: the locale's text of formatted columns, hidden ones left out |

`truncated_note` defaults to `DEFAULT_TRUNCATED_NOTE`; `{max_rows}` in it is replaced.
"""

from __future__ import annotations

import codecs
import csv
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from reporthubd.connectors.base import ServerCSV
from reporthubd.formats.base import FormatError

KNOWN_OPTIONS = frozenset(
    {
        # Column formats, their locale and `formatted` (raw values unless true): formats.csv.
        "columns",
        "locale",
        "formatted",
        "delimiter",
        "quote_char",
        "quoting",
        "escape_char",
        "encoding",
        "encoding_errors",
        "header",
        "null_text",
        "true_text",
        "false_text",
        "date_format",
        "datetime_format",
        "time_format",
        "timezone",
        "line_ending",
        "compression",
        "compression_level",
        "truncate",
        "truncated_note",
        # Read by formats.capture for every format (the email's preview, the chart).
        "chart",
        "preview_rows",
    }
)
QUOTING: dict[str, Literal[0, 1, 2, 3]] = {
    "minimal": csv.QUOTE_MINIMAL,
    "all": csv.QUOTE_ALL,
    "nonnumeric": csv.QUOTE_NONNUMERIC,
    "none": csv.QUOTE_NONE,
}
_LINE_ENDINGS = {"lf": "\n", "\n": "\n", "crlf": "\r\n", "\r\n": "\r\n"}
DEFAULT_TRUNCATED_NOTE = "# truncated: the result had more than {max_rows} rows"


@dataclass(frozen=True, kw_only=True)
class CSVOptions:
    delimiter: str = ","
    quote_char: str = '"'
    quoting: str = "minimal"
    escape_char: str | None = None
    encoding: str = "utf-8"
    bom: bool = False
    encoding_errors: str = "strict"
    header: bool = True
    null_text: str = ""
    true_text: str = "true"
    false_text: str = "false"
    date_format: str | None = None
    datetime_format: str | None = None
    time_format: str | None = None
    timezone: ZoneInfo | None = None
    line_ending: str = "\n"
    compression: str | None = None
    compression_level: int = 6
    truncate: bool = False
    truncated_note: str = DEFAULT_TRUNCATED_NOTE

    @classmethod
    def parse(cls, raw: Any) -> CSVOptions:
        """Validate `format_options`; raise FormatError naming the bad option."""
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise FormatError("csv format_options must be a JSON object")
        unknown = sorted(set(raw) - KNOWN_OPTIONS)
        if unknown:
            raise FormatError(
                f"unknown csv format option(s): {', '.join(unknown)} "
                f"(known: {', '.join(sorted(KNOWN_OPTIONS))})"
            )

        def text(key: str, default: str | None) -> str | None:
            value = raw.get(key, default)
            if value is not None and not isinstance(value, str):
                raise FormatError(f"csv format option {key!r} must be a string")
            return value

        def char(key: str, default: str | None) -> str | None:
            value = text(key, default)
            if value in ("tab", "\\t"):
                value = "\t"
            if value is not None and len(value) != 1:
                raise FormatError(f"csv format option {key!r} must be one character")
            if value in ("\r", "\n"):
                raise FormatError(f"csv format option {key!r} cannot be a line break")
            return value

        def flag(key: str, default: bool) -> bool:
            value = raw.get(key, default)
            if not isinstance(value, bool):
                raise FormatError(f"csv format option {key!r} must be true or false")
            return value

        delimiter = char("delimiter", ",") or ","
        quote_char = char("quote_char", '"') or '"'
        if delimiter == quote_char:
            raise FormatError("csv format options 'delimiter' and 'quote_char' must differ")
        quoting = (text("quoting", "minimal") or "minimal").lower()
        if quoting not in QUOTING:
            raise FormatError(f"csv format option 'quoting' must be one of {', '.join(QUOTING)}")
        escape_char = char("escape_char", None)
        if quoting == "none" and escape_char is None:
            raise FormatError("csv format option quoting 'none' needs an 'escape_char'")
        encoding_name = (text("encoding", "utf-8") or "utf-8").lower()
        bom = encoding_name in {"utf-8-bom", "utf8-bom", "utf-8-sig", "utf_8_sig"}
        if bom:
            encoding_name = "utf-8"
        try:
            encoding = codecs.lookup(encoding_name).name
        except LookupError:
            raise FormatError(
                f"csv format option 'encoding': unknown encoding {encoding_name!r}"
            ) from None
        errors = text("encoding_errors", "strict")
        if errors not in {"strict", "replace"}:
            raise FormatError("csv format option 'encoding_errors' must be strict or replace")
        line_ending = _LINE_ENDINGS.get(str(raw.get("line_ending", "lf")).lower())
        if line_ending is None:
            raise FormatError("csv format option 'line_ending' must be lf or crlf")
        compression = text("compression", None)
        if compression is not None:
            compression = compression.lower()
            if compression in {"none", ""}:
                compression = None
            elif compression not in {"gzip", "zip"}:
                raise FormatError("csv format option 'compression' must be gzip or zip")
        level = raw.get("compression_level", 6)
        if isinstance(level, bool) or not isinstance(level, int) or not 1 <= level <= 9:
            raise FormatError("csv format option 'compression_level' must be an integer 1-9")
        zone: ZoneInfo | None = None
        if (zone_name := text("timezone", None)) is not None:
            try:
                zone = ZoneInfo(zone_name)
            except (ZoneInfoNotFoundError, ValueError):
                raise FormatError(
                    f"csv format option 'timezone': unknown time zone {zone_name!r}"
                ) from None
        for key in ("date_format", "datetime_format", "time_format"):
            pattern = text(key, None)
            if pattern is not None:
                try:
                    datetime(2026, 1, 2, 3, 4, 5).strftime(pattern)
                except ValueError as exc:
                    raise FormatError(f"csv format option {key!r}: {exc}") from None
        return cls(
            delimiter=delimiter,
            quote_char=quote_char,
            quoting=quoting,
            escape_char=escape_char,
            encoding=encoding,
            bom=bom,
            encoding_errors=errors or "strict",
            header=flag("header", True),
            null_text=text("null_text", "") or "",
            true_text=text("true_text", "true") or "",
            false_text=text("false_text", "false") or "",
            date_format=text("date_format", None),
            datetime_format=text("datetime_format", None),
            time_format=text("time_format", None),
            timezone=zone,
            line_ending=line_ending,
            compression=compression,
            compression_level=level,
            truncate=flag("truncate", False),
            truncated_note=text("truncated_note", DEFAULT_TRUNCATED_NOTE) or DEFAULT_TRUNCATED_NOTE,
        )

    def server_csv(self) -> ServerCSV | None:
        """The rendering a database may do for these options, or None when they need Python
        (quoting other than minimal, an escape character, date/time patterns, a time zone)."""
        if (
            self.quoting != "minimal"
            or self.escape_char is not None
            or self.date_format
            or self.datetime_format
            or self.time_format
            or self.timezone is not None
        ):
            return None
        return ServerCSV(
            delimiter=self.delimiter,
            quote_char=self.quote_char,
            quote_all=self.quoting == "all",
            null_text=self.null_text,
            true_text=self.true_text,
            false_text=self.false_text,
            line_ending=self.line_ending,
        )
