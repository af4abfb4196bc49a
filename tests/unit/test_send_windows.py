"""Send windows read on the contact's local clock, across DST in New York and London."""

from __future__ import annotations

from datetime import time, timedelta
from zoneinfo import ZoneInfo

import pytest

from domain.models import DEFAULT_TRANSACTIONAL_WINDOW, SendWindow
from domain.send_windows import is_open, last_open_before, nearest_open, next_open
from tests.support.reminder_world import local

NEW_YORK = "America/New_York"
LONDON = "Europe/London"
WINDOW = DEFAULT_TRANSACTIONAL_WINDOW  # 07:00 to 21:00


@pytest.mark.parametrize(
    ("zone", "wall", "expected"),
    [
        pytest.param(NEW_YORK, (2026, 3, 8, 6, 59), False, id="ny-spring-just-before-opening"),
        pytest.param(NEW_YORK, (2026, 3, 8, 7, 0), True, id="ny-spring-opening-inclusive"),
        pytest.param(NEW_YORK, (2026, 3, 8, 20, 59), True, id="ny-spring-last-minute"),
        pytest.param(NEW_YORK, (2026, 3, 8, 21, 0), False, id="ny-spring-closing-exclusive"),
        pytest.param(NEW_YORK, (2026, 11, 1, 7, 0), True, id="ny-fall-opening"),
        pytest.param(LONDON, (2026, 3, 29, 6, 59), False, id="london-spring-before-opening"),
        pytest.param(LONDON, (2026, 3, 29, 7, 0), True, id="london-spring-opening"),
        pytest.param(LONDON, (2026, 10, 25, 21, 0), False, id="london-fall-closing"),
    ],
)
def test_is_open_reads_the_local_clock_on_dst_days(
    zone: str, wall: tuple[int, int, int, int, int], expected: bool
) -> None:
    """The window opens at 07:00 inclusive and closes at 21:00 exclusive on the local clock, DST day or not."""
    assert is_open(WINDOW, local(zone, *wall), ZoneInfo(zone)) is expected


def test_same_utc_hour_is_closed_before_and_open_after_spring_forward() -> None:
    """11:00 UTC is 06:00 in New York the day before the change and 07:00 on the day: closed, then open."""
    zone = ZoneInfo(NEW_YORK)
    assert not is_open(WINDOW, local(NEW_YORK, 2026, 3, 7, 6), zone)
    assert is_open(WINDOW, local(NEW_YORK, 2026, 3, 8, 7), zone)
    assert local(NEW_YORK, 2026, 3, 8, 7) - local(NEW_YORK, 2026, 3, 7, 6) == timedelta(days=1)


@pytest.mark.parametrize(
    ("zone", "instant", "opening", "elapsed"),
    [
        pytest.param(NEW_YORK, (2026, 3, 8, 1, 0), (2026, 3, 8, 7, 0), timedelta(hours=5), id="ny-spring"),
        pytest.param(NEW_YORK, (2026, 10, 31, 22, 0), (2026, 11, 1, 7, 0), timedelta(hours=10), id="ny-fall"),
        pytest.param(LONDON, (2026, 3, 28, 22, 0), (2026, 3, 29, 7, 0), timedelta(hours=8), id="london-spring"),
        pytest.param(
            LONDON, (2026, 10, 25, 0, 30), (2026, 10, 25, 7, 0), timedelta(hours=7, minutes=30), id="london-fall"
        ),
    ],
)
def test_next_open_is_the_local_opening_across_dst(
    zone: str, instant: tuple[int, ...], opening: tuple[int, ...], elapsed: timedelta
) -> None:
    """A closed window next opens at 07:00 local, 23- and 25-hour days included."""
    start = local(zone, *instant)
    assert next_open(WINDOW, start, ZoneInfo(zone)) == local(zone, *opening)
    assert local(zone, *opening) - start == elapsed


def test_next_open_of_an_open_window_is_now() -> None:
    """When the window is open the next allowed instant is the instant itself."""
    noon = local(LONDON, 2026, 10, 25, 12)
    assert next_open(WINDOW, noon, ZoneInfo(LONDON)) == noon


def test_window_opening_inside_the_spring_gap_opens_after_the_shift() -> None:
    """A window opening at 02:30, a wall time New York skips on 2026-03-08, opens at 03:30 EDT that day."""
    window = SendWindow(time(2, 30), time(21))
    assert next_open(window, local(NEW_YORK, 2026, 3, 8, 1), ZoneInfo(NEW_YORK)) == local(NEW_YORK, 2026, 3, 8, 3, 30)


@pytest.mark.parametrize(
    ("zone", "instant", "closing"),
    [
        pytest.param(NEW_YORK, (2026, 3, 8, 5, 0), (2026, 3, 7, 20, 59), id="ny-spring-morning"),
        pytest.param(NEW_YORK, (2026, 11, 1, 23, 0), (2026, 11, 1, 20, 59), id="ny-fall-night"),
        pytest.param(LONDON, (2026, 10, 25, 5, 0), (2026, 10, 24, 20, 59), id="london-fall-morning"),
        pytest.param(LONDON, (2026, 3, 29, 21, 0), (2026, 3, 29, 20, 59), id="london-spring-at-closing"),
    ],
)
def test_last_open_before_is_the_last_minute_of_the_latest_closing(
    zone: str, instant: tuple[int, ...], closing: tuple[int, ...]
) -> None:
    """Outside the window the latest allowed instant before is 20:59 local of the last open day."""
    assert last_open_before(WINDOW, local(zone, *instant), ZoneInfo(zone)) == local(zone, *closing)


def test_nearest_open_moves_early_morning_forward() -> None:
    """Due at 05:00 for an 08:00 appointment: 07:00 is nearer than the evening before."""
    zone = ZoneInfo(NEW_YORK)
    due = local(NEW_YORK, 2026, 3, 8, 5)
    before = local(NEW_YORK, 2026, 3, 8, 8)
    assert nearest_open(WINDOW, due, zone, not_before=due - timedelta(days=2), before=before) == local(
        NEW_YORK, 2026, 3, 8, 7
    )


def test_nearest_open_moves_night_back_to_the_evening_before() -> None:
    """Due at 03:30 for a 06:30 appointment: the morning is too late, so the evening before at 20:59."""
    zone = ZoneInfo(LONDON)
    due = local(LONDON, 2026, 3, 29, 3, 30)
    before = local(LONDON, 2026, 3, 29, 6, 30)
    assert nearest_open(WINDOW, due, zone, not_before=due - timedelta(days=2), before=before) == local(
        LONDON, 2026, 3, 28, 20, 59
    )


def test_nearest_open_is_none_when_the_evening_has_passed() -> None:
    """Due at 03:30 for a 06:30 appointment, asked at 22:00 the evening before: no allowed instant is left."""
    zone = ZoneInfo(NEW_YORK)
    due = local(NEW_YORK, 2026, 1, 21, 3, 30)
    now = local(NEW_YORK, 2026, 1, 20, 22)
    assert nearest_open(WINDOW, due, zone, not_before=now, before=local(NEW_YORK, 2026, 1, 21, 6, 30)) is None


def test_nearest_open_sends_a_late_message_now_or_at_the_opening() -> None:
    """A due time already past goes at ``not_before`` when open there, else at the next opening."""
    zone = ZoneInfo(NEW_YORK)
    due = local(NEW_YORK, 2026, 1, 20, 9)
    before = local(NEW_YORK, 2026, 1, 22, 9)
    afternoon = local(NEW_YORK, 2026, 1, 20, 15)
    assert nearest_open(WINDOW, due, zone, not_before=afternoon, before=before) == afternoon
    night = local(NEW_YORK, 2026, 1, 20, 23)
    assert nearest_open(WINDOW, due, zone, not_before=night, before=before) == local(NEW_YORK, 2026, 1, 21, 7)


@pytest.mark.parametrize(
    ("zone", "day"),
    [pytest.param(NEW_YORK, (2026, 11, 1), id="ny-fall"), pytest.param(LONDON, (2026, 10, 25), id="london-fall")],
)
def test_nearest_open_measures_elapsed_time_not_wall_time(zone: str, day: tuple[int, int, int]) -> None:
    """Due at the second 01:30 of a fall-back night, 07:00 is 5h30 away and 20:59 the evening before 5h31."""
    tz = ZoneInfo(zone)
    due = local(zone, *day, 1, 30, fold=1)
    before = local(zone, *day, 10)
    assert nearest_open(WINDOW, due, tz, not_before=due - timedelta(days=2), before=before) == local(zone, *day, 7)


def test_nearest_open_prefers_the_earlier_instant_on_a_tie() -> None:
    """Equally far from the evening before and the morning, the message goes the evening before."""
    zone = ZoneInfo(NEW_YORK)
    due = local(NEW_YORK, 2026, 1, 21, 1, 59) + timedelta(seconds=30)
    before = local(NEW_YORK, 2026, 1, 21, 12)
    assert nearest_open(WINDOW, due, zone, not_before=due - timedelta(days=1), before=before) == local(
        NEW_YORK, 2026, 1, 20, 20, 59
    )
