"""Send windows: the local wall-clock hours in which a contact may be messaged.

All arithmetic happens on aware datetimes in the contact's zone and comes back as UTC, so DST days (23 or 25
hours) and odd offsets need no special case.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from domain.models import SendWindow

# The last moment a closing window still allows: ``end`` is exclusive, and messages are minute-grained.
_LAST_MINUTE = timedelta(minutes=1)


def _at(day: date, wall: time, zone: ZoneInfo) -> datetime:
    """The UTC instant of a local wall-clock time (PEP 495 fold=0: a time in a spring-forward gap reads as the
    clock would show it after the shift, 02:30 -> 03:30)."""
    return datetime.combine(day, wall, tzinfo=zone).astimezone(UTC)


def is_open(window: SendWindow, instant: datetime, zone: ZoneInfo) -> bool:
    """Whether ``instant`` falls inside the window, read on the local clock of ``zone``."""
    local = instant.astimezone(zone).time()
    return window.start <= local < window.end


def next_open(window: SendWindow, instant: datetime, zone: ZoneInfo) -> datetime:
    """``instant`` itself when the window is open, else the next opening (today's or tomorrow's) in UTC."""
    if is_open(window, instant, zone):
        return instant.astimezone(UTC)
    local_day = instant.astimezone(zone).date()
    for offset in (0, 1, 2):
        opening = _at(local_day + timedelta(days=offset), window.start, zone)
        if opening > instant:
            return opening
    raise AssertionError("a daily window opens within two days")  # pragma: no cover


def last_open_before(window: SendWindow, instant: datetime, zone: ZoneInfo) -> datetime:
    """``instant`` itself when the window is open, else the last minute of the latest closing before it."""
    if is_open(window, instant, zone):
        return instant.astimezone(UTC)
    local_day = instant.astimezone(zone).date()
    for offset in (0, 1, 2):
        closing = _at(local_day - timedelta(days=offset), window.end, zone) - _LAST_MINUTE
        if closing < instant:
            return closing
    raise AssertionError("a daily window closes within two days")  # pragma: no cover


def nearest_open(
    window: SendWindow, due: datetime, zone: ZoneInfo, *, not_before: datetime, before: datetime
) -> datetime | None:
    """The allowed instant nearest to ``due`` with ``not_before <= t < before``, or None if there is none.

    For transactional messages: a reminder due at 05:00 for an 08:00 appointment goes at 07:00; one due at
    03:30 for a 06:30 appointment goes the evening before, unless that is already past; a late one (``due`` before
    ``not_before``) goes at the first allowed instant from ``not_before``.
    """
    start = max(due, not_before)
    options = [
        t for t in (next_open(window, start, zone), last_open_before(window, start, zone)) if not_before <= t < before
    ]
    return min(options, key=lambda t: (abs(t - due), t)) if options else None
