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
