"""The fake of the Clock port: time stands still until a test moves it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import attrs


@attrs.define
class FakeClock:
    """A clock that stands still until told to move."""

    current: datetime = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.current

    def set(self, moment: datetime) -> None:
        assert moment.tzinfo is not None, "fake clock takes aware datetimes only"
        self.current = moment.astimezone(UTC)

    def advance(self, delta: timedelta) -> None:
        self.current += delta


@attrs.define
class LateClock(FakeClock):
    """Stands still for ``reads`` readings, then reads ``jump`` later for good: a loop blocked between two steps
    that each read the clock."""

    reads: int = 1
    jump: timedelta = timedelta(minutes=5)

    def now(self) -> datetime:
        if self.reads == 0:
            return self.current + self.jump
        self.reads -= 1
        return self.current
