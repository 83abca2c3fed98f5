"""Parameters: precedence, sandboxed date templates, determinism for one logical time."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from reporthubd import domain, templates
from reporthubd.engine import naming, parameters

BERLIN = ZoneInfo("Europe/Berlin")
# 2026-03-04 (a Wednesday) 07:30 UTC = 08:30 in Berlin.
AT = datetime(2026, 3, 4, 7, 30, tzinfo=UTC)


def _vars(at: datetime = AT, zone: ZoneInfo = BERLIN, **kw: datetime | None) -> dict[str, object]:
    return templates.time_variables(at, zone, **kw)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ today }}", date(2026, 3, 4)),
        ("{{ yesterday }}", date(2026, 3, 3)),
        ("{{ tomorrow }}", date(2026, 3, 5)),
        ("{{ today - days(7) }}", date(2026, 2, 25)),
        ("{{ now.hour }}", 8),
        ("{{ start_of_day() }}", datetime(2026, 3, 4, tzinfo=BERLIN)),
        ("{{ end_of_day(-1) }}", datetime(2026, 3, 3, 23, 59, 59, 999999, tzinfo=BERLIN)),
        ("{{ start_of_week() | date }}", date(2026, 3, 2)),
        ("{{ end_of_week() | date }}", date(2026, 3, 8)),
        ("{{ start_of_month(-1) | date }}", date(2026, 2, 1)),
        ("{{ end_of_month(-1) | date }}", date(2026, 2, 28)),
        ("{{ start_of_quarter() | date }}", date(2026, 1, 1)),
        ("{{ end_of_quarter() | date }}", date(2026, 3, 31)),
        ("{{ start_of_quarter(1) | date }}", date(2026, 4, 1)),
        ("{{ start_of_year(-1) | date }}", date(2025, 1, 1)),
        ("{{ end_of_year() | date }}", date(2026, 12, 31)),
        ("{{ start_of('month', 2) | date }}", date(2026, 5, 1)),
        ("{{ add_months(today, -1) }}", date(2026, 2, 4)),
        ("{{ add_months(date(2026, 1, 31), 1) }}", date(2026, 2, 28)),
        ("{{ now | fmt('%Y-%m') }}", "2026-03"),
        ("{{ now | utc | fmt('%H:%M') }}", "07:30"),
        ("{{ now | in_zone('America/New_York') | fmt('%H') }}", "02"),
        ("{{ parse_date('2026-01-31') + days(1) }}", date(2026, 2, 1)),
        ("{{ 40 + 2 }}", 42),
        ("sales_{{ today | fmt('%Y%m%d') }}", "sales_20260304"),
        ("literal text", "literal text"),
    ],
)
def test_templates(template: str, expected: object) -> None:
    value = (
        templates.evaluate(template, _vars(), what="t")
        if templates.is_template(template)
        else template
    )
    assert value == expected
    assert type(value) is type(expected)


def test_start_of_day_across_dst_keeps_the_local_offset() -> None:
    # 2026-03-29: Berlin switches to summer time; the day starts at +01:00, ends at +02:00.
    at = datetime(2026, 3, 29, 12, tzinfo=UTC)
    start = templates.evaluate("{{ start_of_day() }}", _vars(at), what="t")
    end = templates.evaluate("{{ end_of_day() }}", _vars(at), what="t")
    assert start.utcoffset() == timedelta(hours=1)
    assert end.utcoffset() == timedelta(hours=2)


def test_window_from_the_schedule() -> None:
    schedule = domain.Schedule(
        id=1,
        config_id=1,
        cron_expression="0 9 * * 1-5",
        timezone=BERLIN,
        timezone_name="Europe/Berlin",
        parameters={},
        misfire_policy=domain.MisfirePolicy.RUN_ONCE,
        misfire_grace_seconds=None,
        start_at=None,
        end_at=None,
    )
    fire = datetime(2026, 3, 9, 8, tzinfo=UTC)  # Monday 09:00 Berlin
    base = parameters.time_base(
        scheduled_for=fire, created_at=None, schedule=schedule, default_zone=BERLIN, now=AT
    )
    assert base.window_end == fire
    assert base.window_start == datetime(2026, 3, 6, 8, tzinfo=UTC)  # Friday 09:00 Berlin
    variables = templates.time_variables(
        base.logical_time, base.zone, window_start=base.window_start, window_end=base.window_end
    )
    assert templates.evaluate("{{ window_start | fmt('%a %H:%M') }}", variables, what="t") == (
        "Fri 09:00"
    )
    assert templates.evaluate("{{ today }}", variables, what="t") == date(2026, 3, 9)


def test_window_undefined_without_a_schedule() -> None:
    with pytest.raises(templates.TemplateError, match="only defined for runs of a schedule"):
        templates.evaluate("{{ window_start }}", _vars(), what="parameter 'since'")


def test_same_scheduled_for_same_values() -> None:
    values = {"a": "{{ now }}", "b": "{{ start_of_month(-1) }}", "c": ["{{ today }}", 3]}
    first = parameters.resolve(values, _vars())
    again = parameters.resolve(values, _vars())
    assert first == again
    assert first["c"] == [date(2026, 3, 4), 3]
    assert parameters.to_json(first) == {
        "a": "2026-03-04T08:30:00+01:00",
        "b": "2026-02-01T00:00:00+01:00",
        "c": ["2026-03-04", 3],
    }


def test_precedence() -> None:
    merged = parameters.merge({"a": 1, "b": 1, "c": 1}, {"b": 2, "c": 2}, {"c": 3})
    assert merged == {"a": 1, "b": 2, "c": 3}
    assert parameters.merge(None, {}, None) == {}


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ today.__class__.__subclasses__() }}",
        "{{ start_of_day.__globals__ }}",
        "{{ 1 // 0 }}",
        "{{ unknown_name }}",
        "{{ days('x') }}",
        "{% for x in range(10**9) %}{% endfor %}",
    ],
)
def test_templates_are_sandboxed_and_errors_are_clear(template: str) -> None:
    with pytest.raises(templates.TemplateError, match="parameter 'p'"):
        templates.evaluate(template, _vars(), what="parameter 'p'")


@pytest.mark.parametrize(
    ("template", "extension", "expected"),
    [
        (None, "csv", "Sales_20260304_083000.csv"),
        ("{report_name}_{today}", "csv", "Sales_2026-03-04.csv"),
        ("{{ report_name }}-{{ now | fmt('%Y%m') }}", "csv.gz", "Sales-202603.csv.gz"),
        ("report.csv", "csv.gz", "report.csv.gz"),
        ("../../etc/passwd", "csv", "_._etc_passwd.csv"),
        ('a/b\\c:d*e?f"g<h>i|j', "csv", "a_b_c_d_e_f_g_h_i_j.csv"),
        ("bell\x07\nnewline\ttab", "csv", "bell__newline_tab.csv"),
        ("...hidden", "csv", "hidden.csv"),
        ("   ", "csv", "report.csv"),
        ("{region}-{execution_id}", "xlsx", "EMEA-e1.xlsx"),
        ("x" * 500, "csv", "x" * naming.MAX_NAME_LENGTH + ".csv"),
    ],
)
def test_file_names(template: str | None, extension: str, expected: str) -> None:
    variables = dict(_vars())
    variables |= {"report_name": "Sales", "region": "EMEA", "execution_id": "e1"}
    assert naming.render(template, variables, extension=extension) == expected


def test_file_name_from_a_parameter_cannot_escape() -> None:
    variables = dict(_vars()) | {"region": "../../x"}
    name = naming.render("{{ region }}", variables, extension="csv")
    assert "/" not in name and ".." not in name


def test_file_name_template_errors() -> None:
    with pytest.raises(templates.TemplateError, match="unknown variable"):
        naming.render("{nope}", dict(_vars()), extension="csv")
    with pytest.raises(templates.TemplateError, match="file_name_template"):
        naming.render("{{ 1 // 0 }}", dict(_vars()), extension="csv")
