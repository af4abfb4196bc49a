"""The Clock port's contract, run on the fake clock and on the system clock: ``now`` is an aware UTC instant."""

from __future__ import annotations

from datetime import UTC, timedelta

import pytest

from adapters.clock import SystemClock
from domain.ports import Clock
from tests.support.fakes.clock import FakeClock


@pytest.fixture(params=["fake", "system"])
def clock(request: pytest.FixtureRequest) -> Clock:
    return FakeClock() if request.param == "fake" else SystemClock()


def test_now_is_an_aware_utc_instant(clock: Clock) -> None:
    now = clock.now()
    assert now.tzinfo is not None
    assert now.utcoffset() == timedelta(0)
    assert now.tzinfo is UTC
