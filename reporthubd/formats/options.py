"""Reading `format_options` once, in the writer's constructor, with errors that name the option."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from reporthubd.formats.base import FormatError

T = TypeVar("T")

CAPTURE_OPTIONS = frozenset({"chart", "preview_rows"})
"""Keys every format accepts, read by formats.capture (the email's preview, the chart)."""


class Options:
    """A view over one format's options that records which keys were read."""

    def __init__(self, fmt: str, options: Mapping[str, Any] | None) -> None:
        if options is not None and not isinstance(options, Mapping):
            raise FormatError(f"{fmt} format_options must be an object")
        self.fmt = fmt
        self.raw: Mapping[str, Any] = options or {}
        self._read: set[str] = set()

    def _get(self, key: str) -> Any:
        self._read.add(key)
        return self.raw.get(key)

    def value(self, key: str) -> Any:
        """The raw value of a key another module parses (e.g. `columns`), marked as read."""
        return self._get(key)

    def choice(self, key: str, choices: Collection[str], default: str) -> str:
        value = self._get(key)
        if value is None:
            return default
        if not isinstance(value, str) or value not in choices:
            allowed = ", ".join(sorted(choices))
            raise FormatError(f"{self.fmt} format option {key!r} must be one of {allowed}")
        return value

    def integer(self, key: str, default: int, *, minimum: int, maximum: int) -> int:
        value = self._get(key)
        if value is None:
            return default
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or not (minimum <= value <= maximum)
        ):
            raise FormatError(
                f"{self.fmt} format option {key!r} must be an integer from {minimum} to {maximum}"
            )
        return value

    def number(self, key: str, default: float, *, minimum: float, maximum: float) -> float:
        value = self._get(key)
        if value is None:
            return default
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not (minimum <= value <= maximum)
        ):
            raise FormatError(
                f"{self.fmt} format option {key!r} must be a number from {minimum} to {maximum}"
            )
        return float(value)

    def string(self, key: str, default: str | None, *, max_length: int = 500) -> str | None:
        value = self._get(key)
        if value is None:
            return default
        if not isinstance(value, str) or len(value) > max_length:
            raise FormatError(
                f"{self.fmt} format option {key!r} must be a string of at most {max_length} "
                "characters"
            )
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self._get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise FormatError(f"{self.fmt} format option {key!r} must be true or false")
        return value

    def zone(self, key: str, default: str) -> ZoneInfo:
        name = self.string(key, default, max_length=100)
        assert name is not None
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise FormatError(
                f"{self.fmt} format option {key!r}: unknown time zone {name!r}"
            ) from None

    def reject_unknown(self) -> None:
        """Call after reading every option: a misspelt key is an error, not silently ignored."""
        unknown = sorted(set(self.raw) - self._read - CAPTURE_OPTIONS)
        if unknown:
            raise FormatError(f"unknown {self.fmt} format option(s): {', '.join(unknown)}")
