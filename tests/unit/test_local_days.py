"""Local calendar days as UTC windows, across DST, odd offsets and midnights that do not exist or happen twice."""

from __future__ import annotations

import io
import struct
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.local_days import day_start, day_window, local_date


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(
    ("zone_name", "day", "start", "length"),
    [
        ("UTC", date(2026, 1, 14), utc(2026, 1, 14), timedelta(hours=24)),
        ("America/New_York", date(2026, 3, 8), utc(2026, 3, 8, 5), timedelta(hours=23)),
        ("America/New_York", date(2026, 11, 1), utc(2026, 11, 1, 4), timedelta(hours=25)),
        ("America/New_York", date(2026, 7, 15), utc(2026, 7, 15, 4), timedelta(hours=24)),
        ("Europe/Berlin", date(2026, 3, 29), utc(2026, 3, 28, 23), timedelta(hours=23)),
        ("Europe/Berlin", date(2026, 10, 25), utc(2026, 10, 24, 22), timedelta(hours=25)),
        ("Australia/Lord_Howe", date(2026, 4, 5), utc(2026, 4, 4, 13), timedelta(hours=24, minutes=30)),
        ("Australia/Lord_Howe", date(2026, 10, 4), utc(2026, 10, 3, 13, 30), timedelta(hours=23, minutes=30)),
        ("Pacific/Chatham", date(2026, 4, 5), utc(2026, 4, 4, 10, 15), timedelta(hours=25)),
        ("Pacific/Chatham", date(2026, 9, 27), utc(2026, 9, 26, 11, 15), timedelta(hours=23)),
        ("Asia/Kathmandu", date(2026, 1, 1), utc(2025, 12, 31, 18, 15), timedelta(hours=24)),
    ],
)
def test_day_window_start_and_length(zone_name: str, day: date, start: datetime, length: timedelta) -> None:
    """A local day's window starts at its local midnight in UTC and lasts 23, 23.5, 24, 24.5 or 25 hours."""
    window_start, window_end = day_window(day, ZoneInfo(zone_name))
    assert window_start == start
    assert window_end - window_start == length
    assert window_start.tzinfo is UTC


@pytest.mark.parametrize(
    ("zone_name", "day", "start"),
    [
        ("America/Santiago", date(2026, 9, 6), utc(2026, 9, 6, 4)),  # 00:00 -04 jumps to 01:00 -03
        ("Asia/Beirut", date(2020, 3, 29), utc(2020, 3, 28, 22)),  # 00:00 +02 jumps to 01:00 +03
    ],
)
def test_missing_midnight_starts_the_day_at_the_transition(zone_name: str, day: date, start: datetime) -> None:
    """Where local midnight never happens, the day starts at the transition instant (01:00 local) and lasts 23 h."""
    zone = ZoneInfo(zone_name)
    window_start, window_end = day_window(day, zone)
    assert window_start == start
    assert window_start.astimezone(zone).replace(tzinfo=None) == datetime(day.year, day.month, day.day, 1)
    assert local_date(window_start - timedelta(seconds=1), zone) == day - timedelta(days=1)
    assert window_end - window_start == timedelta(hours=23)


def test_twice_happening_midnight_starts_the_day_at_the_first_one() -> None:
    """Where clocks fall back over midnight (Havana, 2026-11-01), the day starts at the first 00:00 and lasts 25 h."""
    start, end = day_window(date(2026, 11, 1), ZoneInfo("America/Havana"))
    assert start == utc(2026, 11, 1, 4)  # 00:00 -04, before the second 00:00 -05
    assert end - start == timedelta(hours=25)


def test_a_skipped_day_has_an_empty_window() -> None:
    """Samoa skipped 2011-12-30 whole: that day's window is empty and the days around it touch."""
    apia = ZoneInfo("Pacific/Apia")
    start, end = day_window(date(2011, 12, 30), apia)
    assert start == end == utc(2011, 12, 30, 10)
    assert day_window(date(2011, 12, 29), apia)[1] == start
    assert day_window(date(2011, 12, 31), apia)[0] == end


def _zone_with_one_transition(key: str, at: datetime, offset_before: int, offset_after: int) -> ZoneInfo:
    """A TZif (version 1) zone whose UTC offset changes once, at ``at``: for shapes no real zone has had."""
    names = b"OLD\0NEW\0"
    header = b"TZif" + b"\0" + bytes(15) + struct.pack(">6l", 0, 0, 0, 1, 2, len(names))
    transitions = struct.pack(">l", int(at.timestamp())) + bytes([1])
    types = struct.pack(">lBB", offset_before, 0, 0) + struct.pack(">lBB", offset_after, 1, 4)
    return ZoneInfo.from_file(io.BytesIO(header + transitions + types + names), key=key)


def test_midnight_strictly_inside_a_gap_starts_the_day_at_the_transition() -> None:
    """Clocks jumping from 23:30 to 00:30 start the next day at the jump (00:30 local), not at a guessed 01:00."""
    zone = _zone_with_one_transition("Test/MidGap", utc(2026, 6, 1, 23, 30), 0, 3600)
    assert day_window(date(2026, 6, 1), zone) == (utc(2026, 6, 1), utc(2026, 6, 1, 23, 30))
    assert day_window(date(2026, 6, 2), zone) == (utc(2026, 6, 1, 23, 30), utc(2026, 6, 2, 23))


def test_local_date_reads_the_zone() -> None:
    """The same instant is a different calendar date in New York and in Kathmandu."""
    instant = utc(2026, 1, 15, 3)
    assert local_date(instant, ZoneInfo("America/New_York")) == date(2026, 1, 14)
    assert local_date(instant, ZoneInfo("Asia/Kathmandu")) == date(2026, 1, 15)


_ZONES = [
    "UTC",
    "America/New_York",
    "Europe/Berlin",
    "Europe/London",
    "America/Santiago",
    "America/Havana",
    "Asia/Beirut",
    "Asia/Kathmandu",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "Pacific/Apia",
]


@given(
    zone_name=st.sampled_from(_ZONES),
    day=st.dates(min_value=date(1990, 1, 1), max_value=date(2037, 12, 31)),
)
def test_day_start_is_the_first_instant_of_the_day(zone_name: str, day: date) -> None:
    """One second before a day's start is an earlier local date, the start itself is that date or (skipped) later."""
    zone = ZoneInfo(zone_name)
    start, end = day_window(day, zone)
    assert local_date(start - timedelta(seconds=1), zone) < day
    assert local_date(start, zone) >= day
    assert timedelta(0) <= end - start <= timedelta(hours=26)
    if end > start:
        assert local_date(start, zone) == day
        assert local_date(end - timedelta(seconds=1), zone) == day
    assert day_start(day + timedelta(days=1), zone) == end
