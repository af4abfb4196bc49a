"""Local calendar days of an IANA zone as UTC windows.

A local day runs from its first instant to the first instant of the next day: 24 hours most days, 23 or 25 on
DST days, 23.5 or 24.5 in half-hour DST zones (Australia/Lord_Howe). Local midnight is not always that first
instant: where clocks spring forward at midnight (America/Santiago, Asia/Beirut in 2020) it never happens and
the day starts at the transition (01:00 local); where they fall back over midnight (America/Havana) it happens
twice and the day starts at the first one. A day skipped whole (Pacific/Apia, 2011-12-30) has an empty window.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

_ONE_DAY = timedelta(days=1)
_ONE_SECOND = timedelta(seconds=1)


def local_date(instant: datetime, zone: ZoneInfo) -> date:
    """The calendar date in ``zone`` at the aware ``instant``."""
    return instant.astimezone(zone).date()


def day_start(day: date, zone: ZoneInfo) -> datetime:
    """The first instant (aware, UTC) whose local date in ``zone`` is ``day`` or later."""
    midnight = datetime.combine(day, time(0))
    # fold=0 picks the earlier of two midnights; inside a gap it applies the offset from before the transition,
    # which lands at or after the transition.
    after = midnight.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if after.astimezone(zone).replace(tzinfo=None) == midnight:
        return after
    # Midnight falls in a gap. fold=1 applies the offset from after the transition, which lands before it (still
    # on an earlier local day): the transition lies between the two. Offsets are whole seconds, so bisect those.
    before = midnight.replace(tzinfo=zone, fold=1).astimezone(UTC)
    while after - before > _ONE_SECOND:
        middle = before + (after - before) // 2
        if local_date(middle, zone) >= day:
            after = middle
        else:
            before = middle
    return after


def day_window(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The UTC instants ``[start, end)`` of the local calendar day ``day`` in ``zone``."""
    return day_start(day, zone), day_start(day + _ONE_DAY, zone)
