"""The business-calendar rules (reporthubd/calendars.py), pure: closed days from the `holidays`
library plus explicit dates, where a fire moves under each policy (Berlin and New York), and the
errors that name the key. Dates are hand-checked against the 2027 calendar."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from reporthubd import calendars, domain, templates
from reporthubd.cron import FireTimes, parse_cron
from reporthubd.engine import parameters
from reporthubd.scheduler import views

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def fires(
    calendar: calendars.Calendar,
    policy: str,
    cron: str,
    zone: ZoneInfo,
    start: date,
    end: date,
) -> list[tuple[str, str, str | None]]:
    """(logical local time, run local time, skipped reason) for logical fires in [start, end]."""
    times = calendars.CalendarFires(
        FireTimes(parse_cron(cron), zone), calendar, calendars.CalendarPolicy(policy)
    )
    after = datetime(start.year, start.month, start.day, tzinfo=zone) - timedelta(seconds=1)
    last = datetime(end.year, end.month, end.day, 23, 59, tzinfo=zone).timestamp()
    out = []
    # start the walk a week early: a fire moved back may run before `start`
    for fire in times.iter_after(after - timedelta(days=7)):
        if fire.logical > last + 8 * 86_400:
            break
        if after.timestamp() < fire.logical <= last:
            out.append(
                (
                    datetime.fromtimestamp(fire.logical, zone).strftime("%a %m-%d %H:%M"),
                    datetime.fromtimestamp(fire.actual, zone).strftime("%a %m-%d %H:%M"),
                    fire.skipped_reason,
                )
            )
    return sorted(out)


def test_berlin_closed_days_come_from_the_holidays_library() -> None:
    berlin = calendars.build(name="de-berlin", country="DE", subdivision="BE")
    assert berlin.closed_reason(date(2027, 3, 26)) == "holiday: Good Friday, de-berlin"
    assert berlin.closed_reason(date(2027, 3, 8)) == "holiday: Women's Day, de-berlin"
    assert berlin.closed_reason(date(2027, 5, 1)) == "holiday: Labor Day, de-berlin"  # a Saturday
    assert berlin.closed_reason(date(2027, 3, 27)) == "weekend: Saturday, de-berlin"
    assert berlin.is_business_day(date(2027, 3, 25))
    # Women's Day is Berlin's, not Bavaria's
    assert calendars.build(name="de-by", country="DE", subdivision="BY").is_business_day(
        date(2027, 3, 8)
    )


def test_previous_and_next_business_day_and_the_count_between() -> None:
    berlin = calendars.build(name="de-berlin", country="DE", subdivision="BE")
    assert berlin.next_business_day(date(2027, 3, 25)) == date(2027, 3, 30)
    assert berlin.previous_business_day(date(2027, 3, 30)) == date(2027, 3, 25)
    assert berlin.previous_business_day(date(2027, 1, 4)) == date(2026, 12, 31)
    # [Mon 22 March, Mon 5 April): 10 weekdays less Good Friday and Easter Monday
    assert berlin.business_days_between(date(2027, 3, 22), date(2027, 4, 5)) == 8
    assert berlin.business_days_between(date(2027, 4, 5), date(2027, 3, 22)) == -8
    assert berlin.business_days_between(date(2027, 3, 22), date(2027, 3, 22)) == 0


def test_added_and_removed_dates_override_the_rules() -> None:
    office = calendars.build(
        name="berlin-office",
        country="DE",
        subdivision="BE",
        added={date(2027, 12, 24): "Christmas Eve (office closed)"},
        removed={date(2027, 3, 8)},  # the office works on Women's Day
    )
    assert office.closed_reason(date(2027, 12, 24)) == (
        "holiday: Christmas Eve (office closed), berlin-office"
    )
    assert office.is_business_day(date(2027, 3, 8))


def test_berlin_shifts_under_each_policy() -> None:
    berlin = calendars.build(name="de-berlin", country="DE", subdivision="BE")
    week = (date(2027, 3, 25), date(2027, 3, 30))
    assert fires(berlin, "next_business_day", "0 9 * * 1-5", BERLIN, *week) == [
        ("Fri 03-26 09:00", "Tue 03-30 09:00", None),
        ("Mon 03-29 09:00", "Tue 03-30 09:00", None),
        ("Thu 03-25 09:00", "Thu 03-25 09:00", None),
        ("Tue 03-30 09:00", "Tue 03-30 09:00", None),
    ]
    assert fires(berlin, "previous_business_day", "0 9 * * 1-5", BERLIN, *week) == [
        ("Fri 03-26 09:00", "Thu 03-25 09:00", None),
        ("Mon 03-29 09:00", "Thu 03-25 09:00", None),
        ("Thu 03-25 09:00", "Thu 03-25 09:00", None),
        ("Tue 03-30 09:00", "Tue 03-30 09:00", None),
    ]
    assert fires(berlin, "skip", "0 9 * * 1-5", BERLIN, *week) == [
        ("Fri 03-26 09:00", "Fri 03-26 09:00", "holiday: Good Friday, de-berlin"),
        ("Mon 03-29 09:00", "Mon 03-29 09:00", "holiday: Easter Monday, de-berlin"),
        ("Thu 03-25 09:00", "Thu 03-25 09:00", None),
        ("Tue 03-30 09:00", "Tue 03-30 09:00", None),
    ]


def test_new_york_thanksgiving_and_independence_day_observed() -> None:
    new_york = calendars.build(name="us-ny", country="US", subdivision="NY")
    # Thanksgiving, Thu 25 November 2027: the 08:30 run moves to Friday 08:30 New York time
    assert fires(
        new_york,
        "next_business_day",
        "30 8 * * 1-5",
        NEW_YORK,
        date(2027, 11, 25),
        date(2027, 11, 25),
    ) == [("Thu 11-25 08:30", "Fri 11-26 08:30", None)]
    # 4 July 2027 is a Sunday; the holiday is observed on Monday the 5th
    assert new_york.closed_reason(date(2027, 7, 5)) == (
        "holiday: Independence Day (observed), us-ny"
    )
    # a daily schedule: Saturday and Sunday fires are moved too, onto Tuesday after the 5th
    assert fires(
        new_york, "next_business_day", "0 7 * * *", NEW_YORK, date(2027, 7, 3), date(2027, 7, 6)
    ) == [
        ("Mon 07-05 07:00", "Tue 07-06 07:00", None),
        ("Sat 07-03 07:00", "Tue 07-06 07:00", None),
        ("Sun 07-04 07:00", "Tue 07-06 07:00", None),
        ("Tue 07-06 07:00", "Tue 07-06 07:00", None),
    ]


def test_a_shift_onto_a_spring_forward_day_keeps_the_wall_time_rules() -> None:
    # 02:30 does not exist on Sunday 28 March 2027 in Berlin; a calendar that opens that
    # Sunday (removed) and closes Saturday moves a 02:30 fire into the gap: it runs at 03:30
    odd = calendars.build(name="odd", removed={date(2027, 3, 28)})
    times = calendars.CalendarFires(
        FireTimes(parse_cron("30 2 * * 6"), BERLIN), odd, calendars.CalendarPolicy.NEXT_BUSINESS_DAY
    )
    fire = times.step(datetime(2027, 3, 26, tzinfo=UTC).timestamp())[0]
    assert datetime.fromtimestamp(fire.actual, UTC) == datetime(2027, 3, 28, 1, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"country": "XX"}, "country: unknown country code 'XX'"),
        ({"country": "DE", "subdivision": "ZZ"}, "subdivision: unknown subdivision 'ZZ' of DE"),
        ({"subdivision": "BE"}, "subdivision: calendar 'bad' names a subdivision but no country"),
        (
            {"added": {date(2027, 8, 1) + timedelta(days=n): "summer" for n in range(31)}},
            "added: calendar 'bad' closes every day of 2027-08",
        ),
    ],
)
def test_bad_calendars_are_refused_naming_the_key(values: dict[str, object], message: str) -> None:
    with pytest.raises(calendars.CalendarError, match=message):
        calendars.build(name="bad", **values)  # type: ignore[arg-type]


def test_bad_policy_and_dates_name_the_key() -> None:
    with pytest.raises(calendars.CalendarError, match="calendar_policy: unknown policy 'later'"):
        calendars.parse_policy("later")
    with pytest.raises(calendars.CalendarError, match=r"added\.2027-02-30: not a date"):
        calendars.parse_added({"2027-02-30": "x"})
    with pytest.raises(calendars.CalendarError, match=r"removed\[0\]: not a date"):
        calendars.parse_removed(["soon"])


def berlin_weekdays(policy: calendars.CalendarPolicy) -> domain.Schedule:
    """`0 9 * * 1-5` Europe/Berlin on the de-berlin calendar under `policy`."""
    return domain.Schedule(
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
        calendar_name="de-berlin",
        calendar_policy=policy,
        calendar=calendars.build(name="de-berlin", country="DE", subdivision="BE"),
    )


def test_template_helpers_know_the_schedules_calendar() -> None:
    schedule = berlin_weekdays(calendars.CalendarPolicy.NEXT_BUSINESS_DAY)
    # the logical time of Easter Tuesday's run, 09:00 Berlin
    logical = datetime(2027, 3, 30, 7, tzinfo=UTC)
    variables = templates.time_variables(logical, BERLIN)
    variables.update(parameters.business_day_variables(schedule, logical, BERLIN))

    def run(text: str) -> object:
        return templates.evaluate(text, variables, what="test")

    assert run("{{ prev_business_day() }}") == date(2027, 3, 25)  # over Easter
    assert run("{{ prev_business_day(n=2) }}") == date(2027, 3, 24)
    assert run("{{ next_business_day(parse_date('2027-05-05')) }}") == date(2027, 5, 7)
    # [1 March, 30 March): 21 weekdays less 8 March, Good Friday and Easter Monday
    assert run("{{ business_days_between(start_of_month() | date, today) }}") == 18
    assert run("{{ is_business_day(date(2027, 3, 8)) }}") is False
    assert run("{{ business_calendar }}") == "de-berlin"
    # without a calendar: Monday to Friday
    plain = templates.time_variables(logical, BERLIN)
    plain.update(parameters.business_day_variables(None, logical, BERLIN))
    assert templates.evaluate("{{ prev_business_day() }}", plain, what="t") == date(2027, 3, 29)
    with pytest.raises(templates.TemplateError, match="n must be 1 or more"):
        run("{{ next_business_day(n=0) }}")


def test_the_api_view_of_next_fires_marks_the_calendar() -> None:
    schedule = berlin_weekdays(calendars.CalendarPolicy.PREVIOUS_BUSINESS_DAY)
    fires = views.next_fires(schedule, datetime(2027, 5, 12, 12, tzinfo=UTC), 3)
    # Pentecost Monday (17 May) runs on Friday 14 May at 09:00, beside Friday's own fire
    assert fires == [
        {"utc": "2027-05-13T07:00:00Z", "local": "2027-05-13T09:00:00+02:00", "status": "run"},
        {"utc": "2027-05-14T07:00:00Z", "local": "2027-05-14T09:00:00+02:00", "status": "run"},
        {
            "utc": "2027-05-17T07:00:00Z",
            "local": "2027-05-17T09:00:00+02:00",
            "status": "shifted",
            "runs_utc": "2027-05-14T07:00:00Z",
            "runs_local": "2027-05-14T09:00:00+02:00",
            "reason": "holiday: Pentecost Monday, de-berlin",
        },
    ]
