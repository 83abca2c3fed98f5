"""The fast paths of formats.localize write exactly Babel's text: numbers (Python's decimal
formatting with the locale's symbols and Babel's affixes) and medium/short timestamps (cached
date and time halves), on random values across locales with different symbols, groupings and
numbering systems; where the fast path does not apply, Babel itself writes."""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal
from zoneinfo import ZoneInfo

import babel.dates
import babel.numbers
import pytest

from reporthubd.formats import columns as colfmt
from reporthubd.formats import localize

LOCALES = ["de_DE", "en_US", "fr_FR", "de_CH", "hi_IN", "ar_EG", "sv_SE", "ja_JP", "he_IL"]
SPECS = [
    colfmt.ColumnFormat(name="a", kind=colfmt.Kind.CURRENCY, currency="EUR"),
    colfmt.ColumnFormat(name="a", kind=colfmt.Kind.CURRENCY, currency="JPY", decimals=0),
    colfmt.ColumnFormat(name="a", kind=colfmt.Kind.PERCENT, decimals=1),
    colfmt.ColumnFormat(name="a", kind=colfmt.Kind.INTEGER),
    colfmt.ColumnFormat(name="a", kind=colfmt.Kind.NUMBER, decimals=3, grouping=False),
]


@pytest.mark.parametrize("locale_name", LOCALES)
def test_numbers_are_babels_text(locale_name: str) -> None:
    locale = localize.parse_locale("pdf", locale_name)
    rng = random.Random(locale_name)
    for spec in SPECS:
        pattern = babel.numbers.parse_pattern(localize.number_pattern(spec, locale))
        text = localize.text_function(spec, locale, ZoneInfo("UTC"))
        for _ in range(2000):
            value = rng.choice(
                [
                    Decimal(rng.randint(-(10**12), 10**12)) / 1000,
                    rng.uniform(-1e7, 1e7),
                    rng.randint(-(10**9), 10**9),
                    round(rng.uniform(-10, 10), 3),
                ]
            )
            want = pattern.apply(value, locale, currency=spec.currency, currency_digits=False)
            assert text(value) == want, (locale_name, spec.kind, value)


@pytest.mark.parametrize("locale_name", LOCALES)
@pytest.mark.parametrize("style", ["medium", "short"])
def test_timestamps_are_babels_text(locale_name: str, style: str) -> None:
    locale = localize.parse_locale("pdf", locale_name)
    rng = random.Random(f"{locale_name}{style}")
    for zone_name in ("Europe/Berlin", "America/New_York", "UTC"):
        zone = ZoneInfo(zone_name)
        spec = colfmt.ColumnFormat(name="a", kind=colfmt.Kind.DATETIME, style=style)
        text = localize.text_function(spec, locale, zone)
        for _ in range(500):
            value = dt.datetime(2020, 1, 1, tzinfo=dt.UTC) + dt.timedelta(
                seconds=rng.randint(0, 10**8)
            )
            assert text(value) == babel.dates.format_datetime(
                value, style, tzinfo=zone, locale=locale
            )
            naive = value.replace(tzinfo=None)
            assert text(naive) == babel.dates.format_datetime(
                value, style, tzinfo=dt.UTC, locale=locale
            )
