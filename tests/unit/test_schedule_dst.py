"""Cron fire times across the 2026 America/New_York DST changes (2026-03-08 spring, 2026-11-01 fall).

What is expected, and why:
- ``0 1 * * *`` (a fixed time): exactly one fire per local day, at 01:00 local. On the fall day, 01:00 happens
  twice on the wall clock; the job fires at the first (01:00 EDT = 05:00Z) only, as cron does for fixed times.
- ``30 2 * * *`` on the spring day: 02:30 never happens on the wall; the day is not lost, the job fires the gap's
  length later (03:30 EDT = 07:30Z).
- ``0 * * * *`` (hour wildcard): a period, "every hour": one fire in every real hour. In the fall that includes
  the repeated hour (01:00 EDT and 01:00 EST, an hour apart: two fires at two different instants, never two at
  one instant); in the spring the skipped 02:00 and the real 03:00 are the same instant (one fire).

bullmq 3.4.4's own evaluation (``default_repeat_strategy``, croniter 2.0.7 iterating in the zone) breaks three of
these; those cases are strict xfails, and the same expectations pass with our ``zoned_repeat_strategy``, which the
schedulers use (adapters/scheduling/cron.py).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from bullmq import Queue
from bullmq.job_scheduler import JobScheduler, default_repeat_strategy

from adapters.scheduling import cron
from adapters.scheduling.cron import RepeatStrategy, zoned_repeat_strategy

NY = "America/New_York"


def utc(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def fires(strategy: RepeatStrategy, pattern: str, start: datetime, end: datetime, tz: str = NY) -> list[datetime]:
    """Every fire in (start, end), each computed from the previous one as the worker does."""
    found: list[datetime] = []
    millis = int(start.timestamp() * 1000)
    while True:
        nxt = strategy(millis, {"pattern": pattern, "tz": tz})
        assert nxt is not None
        assert nxt > millis
        if nxt >= end.timestamp() * 1000:
            return found
        found.append(datetime.fromtimestamp(nxt / 1000, tz=UTC))
        millis = nxt


def library_bug(reason: str) -> pytest.MarkDecorator:
    return pytest.mark.xfail(strict=True, reason=f"bullmq 3.4.4 default_repeat_strategy / croniter 2.0.7: {reason}")


LIBRARY = pytest.param(default_repeat_strategy, id="library")
OURS = pytest.param(zoned_repeat_strategy, id="zoned")

FALL_DAILY = [utc(2026, 10, 31, 5), utc(2026, 11, 1, 5), utc(2026, 11, 2, 6), utc(2026, 11, 3, 6)]
SPRING_DAILY = [utc(2026, 3, 7, 6), utc(2026, 3, 8, 6), utc(2026, 3, 9, 5), utc(2026, 3, 10, 5)]


@pytest.mark.parametrize(
    "strategy", [pytest.param(default_repeat_strategy, id="library", marks=library_bug("02:00 EST on 11-02")), OURS]
)
def test_daily_one_am_fires_once_per_day_across_fall_back(strategy: RepeatStrategy) -> None:
    """``0 1 * * *`` fires once on 2026-11-01 (01:00 EDT) and at 01:00 EST on the days after."""
    assert fires(strategy, "0 1 * * *", utc(2026, 10, 31, 0), utc(2026, 11, 3, 12)) == FALL_DAILY


@pytest.mark.parametrize(
    "strategy",
    [pytest.param(default_repeat_strategy, id="library", marks=library_bug("fires 00:00 and 01:00 on 03-09")), OURS],
)
def test_daily_one_am_fires_once_per_day_across_spring_forward(strategy: RepeatStrategy) -> None:
    """``0 1 * * *`` fires once on 2026-03-08 (01:00 EST) and once a day at 01:00 EDT after."""
    assert fires(strategy, "0 1 * * *", utc(2026, 3, 7, 0), utc(2026, 3, 10, 12)) == SPRING_DAILY


@pytest.mark.parametrize("strategy", [LIBRARY, OURS])
def test_skipped_wall_time_does_not_lose_the_spring_day(strategy: RepeatStrategy) -> None:
    """``30 2 * * *`` fires on 2026-03-08 at 03:30 EDT, though 02:30 never happens that day."""
    assert fires(strategy, "30 2 * * *", utc(2026, 3, 7, 0), utc(2026, 3, 9, 12)) == [
        utc(2026, 3, 7, 7, 30),
        utc(2026, 3, 8, 7, 30),
        utc(2026, 3, 9, 6, 30),
    ]


@pytest.mark.parametrize(
    "strategy",
    [pytest.param(default_repeat_strategy, id="library", marks=library_bug("skips 01:00 EST, 2 h gap")), OURS],
)
def test_hourly_fires_every_real_hour_across_fall_back(strategy: RepeatStrategy) -> None:
    """``0 * * * *`` fires at 04:00Z, 05:00Z (01:00 EDT), 06:00Z (01:00 EST), 07:00Z: every real hour, once."""
    found = fires(strategy, "0 * * * *", utc(2026, 11, 1, 3, 30), utc(2026, 11, 1, 7, 30))
    assert found == [utc(2026, 11, 1, 4), utc(2026, 11, 1, 5), utc(2026, 11, 1, 6), utc(2026, 11, 1, 7)]


@pytest.mark.parametrize("strategy", [LIBRARY, OURS])
def test_hourly_has_no_lost_or_doubled_hour_across_spring_forward(strategy: RepeatStrategy) -> None:
    """``0 * * * *`` fires at 06:00Z (01:00 EST), 07:00Z (03:00 EDT), 08:00Z: one fire per real hour."""
    found = fires(strategy, "0 * * * *", utc(2026, 3, 8, 5, 30), utc(2026, 3, 8, 8, 30))
    assert found == [utc(2026, 3, 8, 6), utc(2026, 3, 8, 7), utc(2026, 3, 8, 8)]


def test_fixed_hour_with_minute_steps_fires_only_in_the_first_repeated_hour() -> None:
    """``*/20 1 * * *`` on 2026-11-01 fires 01:00, 01:20, 01:40 EDT and not again in the repeated hour."""
    found = fires(zoned_repeat_strategy, "*/20 1 * * *", utc(2026, 11, 1, 4), utc(2026, 11, 2, 4))
    assert found == [utc(2026, 11, 1, 5), utc(2026, 11, 1, 5, 20), utc(2026, 11, 1, 5, 40)]


@pytest.mark.parametrize(
    ("pattern", "tz"), [("0 1 * * *", "UTC"), ("*/15 * * * *", "Europe/London"), ("0 9 * * 1-5", "Asia/Kolkata")]
)
def test_zoned_strategy_agrees_with_the_library_away_from_transitions(pattern: str, tz: str) -> None:
    """Outside DST changes (and in UTC) our evaluation gives the library's instants."""
    start, end = utc(2026, 6, 1, 0), utc(2026, 6, 8, 0)
    assert fires(zoned_repeat_strategy, pattern, start, end, tz) == fires(
        default_repeat_strategy, pattern, start, end, tz
    )


def test_six_field_pattern_has_seconds_first() -> None:
    """A 6-field pattern (``*/10 * * * * *``) fires every 10 seconds in a zone, as bullmq reads it."""
    found = fires(zoned_repeat_strategy, "*/10 * * * * *", utc(2026, 6, 1, 0), utc(2026, 6, 1, 0, 1), "Europe/Paris")
    assert [f.second for f in found] == [10, 20, 30, 40, 50]


def test_queue_and_worker_job_schedulers_can_be_given_our_strategy() -> None:
    """``use_zoned_repeat_strategy`` reaches the JobScheduler a bullmq Queue builds (fails if the library changes)."""
    queue = Queue("reminders", {"prefix": "unit", "connection": "redis://127.0.0.1:1"})
    cron.use_zoned_repeat_strategy(queue)
    assert queue.jobScheduler.repeat_strategy is zoned_repeat_strategy


def test_process_wide_install_reaches_schedulers_built_without_a_strategy(monkeypatch: pytest.MonkeyPatch) -> None:
    """After ``install_zoned_repeat_strategy`` a JobScheduler built as the Worker builds it uses our evaluation."""
    import bullmq.job_scheduler as module

    monkeypatch.setattr(module, "default_repeat_strategy", module.default_repeat_strategy)  # restored afterwards
    cron.install_zoned_repeat_strategy()
    queue = Queue("reminders", {"prefix": "unit", "connection": "redis://127.0.0.1:1"})
    assert JobScheduler(queue).repeat_strategy is zoned_repeat_strategy
