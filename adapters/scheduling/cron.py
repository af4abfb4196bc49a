"""Cron evaluation in a time zone that survives daylight-saving changes, for bullmq's job schedulers.

bullmq 3.4.4 computes a scheduler's next fire time with ``default_repeat_strategy``, which asks croniter 2.0.7 to
iterate in the zone itself. Across the 2026 America/New_York transitions that goes wrong (see
tests/unit/test_schedule_dst.py): an hourly pattern skips the repeated 01:00 hour in the fall, a daily ``0 1 * * *``
fires at 00:00 and again at 01:00 the day after the spring change, and at 02:00 instead of 01:00 the day after the
fall change. Here croniter only walks naive wall-clock times (where it is right) and each wall time is mapped to
real instants by ``zoneinfo``, with cron's usual rules:

- a wall time skipped by the spring jump fires the length of the gap later (``30 2 * * *`` -> 03:30 EDT), so the
  day is not lost;
- a wall time shown twice in the fall fires once, at its first occurrence, unless the pattern's hour field is a
  wildcard (``*``, ``*/n``): such a pattern describes a period, so it fires in every real hour, including the
  repeated one (ISC cron treats fixed-time and wildcard jobs the same way).

Without a zone (or in UTC) the library's own strategy is used unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import bullmq.job_scheduler as bullmq_job_scheduler
from bullmq.job_scheduler import JobScheduler
from croniter import croniter

from domain.errors import ConfigurationError

RepeatStrategy = Callable[[int, dict[str, Any]], int | None]

LIBRARY_STRATEGY: RepeatStrategy = bullmq_job_scheduler.default_repeat_strategy
"""bullmq's own evaluation, kept before :func:`install_zoned_repeat_strategy` replaces the module default."""

_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_UTC_NAMES = frozenset({"UTC", "Etc/UTC", "Z", "Etc/Zulu", "Zulu", "GMT", "Etc/GMT"})
_LARGEST_DST_SHIFT = timedelta(hours=3)
"""More than any zone's DST jump (2 h at most): how far around the base wall time candidates are collected."""


def check_cron(pattern: str, tz: str) -> None:
    """Raise ConfigurationError unless ``pattern`` is a cron expression (5 fields, or 6 with seconds first) and
    ``tz`` an IANA zone this machine knows."""
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigurationError(f"schedule time zone {tz!r} is not a known IANA zone") from None
    expanded = _ALIASES.get(pattern.strip(), pattern)
    if len(expanded.split()) not in (5, 6) or not croniter.is_valid(expanded, second_at_beginning=True):
        raise ConfigurationError(f"schedule pattern {pattern!r} is not a cron expression (5 or 6 fields)")


def _hour_is_wildcard(fields: list[str]) -> bool:
    hour = fields[2] if len(fields) == 6 else fields[1]
    return hour.startswith("*")


def _instants(wall: datetime, zone: ZoneInfo, every_occurrence: bool) -> list[datetime]:
    """The UTC instants at which the naive local ``wall`` time happens (see the module rules)."""
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if first == second:
        return [first]
    if first.astimezone(zone).replace(tzinfo=None) != wall:
        return [first]  # skipped by the spring jump: fold=0 keeps the old offset, i.e. the gap's length later
    return [first, second] if every_occurrence else [first]


def next_fire(pattern: str, tz: str, after: datetime) -> datetime:
    """The first instant strictly after ``after`` at which ``pattern`` fires in the zone ``tz`` (DST-safe)."""
    zone = ZoneInfo(tz)
    expanded = _ALIASES.get(pattern.strip(), pattern)
    every_occurrence = _hour_is_wildcard(expanded.split())
    base_wall = after.astimezone(zone).replace(tzinfo=None)
    walls = croniter(expanded, base_wall - _LARGEST_DST_SHIFT, second_at_beginning=True)
    best: datetime | None = None
    while True:
        wall: datetime = walls.get_next(datetime)
        if best is not None and wall > base_wall + _LARGEST_DST_SHIFT:
            return best
        for instant in _instants(wall, zone, every_occurrence):
            if instant > after and (best is None or instant < best):
                best = instant


def zoned_repeat_strategy(millis: int, opts: dict[str, Any]) -> int | None:
    """A drop-in for bullmq's ``default_repeat_strategy`` (same options, same result without a DST zone)."""
    tz = opts.get("tz")
    pattern = opts.get("pattern")
    if not pattern or not tz or tz in _UTC_NAMES or opts.get("immediately"):
        return LIBRARY_STRATEGY(millis, opts)
    start = bullmq_job_scheduler._to_millis(opts.get("startDate"))  # the library's own date parsing
    base_ms = max(millis, start) if start is not None else millis
    after = datetime.fromtimestamp(base_ms / 1000, tz=UTC)
    return int(next_fire(pattern, tz, after).timestamp() * 1000)


def use_zoned_repeat_strategy(owner: Any) -> None:
    """Make one bullmq ``Queue`` or ``Worker`` evaluate cron patterns with :func:`zoned_repeat_strategy`.

    Both create their ``JobScheduler`` lazily into ``_job_scheduler``; we create it first, with our strategy.
    tests/unit/test_schedule_dst.py fails if a library upgrade stops honouring this.
    """
    owner._job_scheduler = JobScheduler(owner, repeat_strategy=zoned_repeat_strategy)


def install_zoned_repeat_strategy() -> None:
    """Process-wide: every bullmq ``JobScheduler`` created without an explicit strategy uses ours.

    The worker computes each next iteration in ``Worker.jobScheduler``, built inside the runtime where we cannot
    reach it; ``JobScheduler.__init__`` looks ``default_repeat_strategy`` up in its module at call time, so
    replacing that name reaches it. Call once at process start-up, before any worker runs. Idempotent.
    """
    bullmq_job_scheduler.default_repeat_strategy = zoned_repeat_strategy
